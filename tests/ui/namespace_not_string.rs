use carafe::Session;

#[derive(Session)]
#[session(namespace = visit)]
struct Visit {
    count: u32,
}

fn main() {}
