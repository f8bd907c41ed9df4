use carafe::Session;

struct Connection {
    id: u32,
}

#[derive(Session)]
struct Visit {
    count: u32,
    #[session(skip)]
    connection: Connection,
}

fn main() {}
