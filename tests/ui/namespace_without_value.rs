use carafe::Session;

#[derive(Session)]
#[session(namespace)]
struct Visit {
    count: u32,
}

fn main() {}
