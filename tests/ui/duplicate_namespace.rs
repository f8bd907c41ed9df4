use carafe::Session;

#[derive(Session)]
#[session(namespace = "visit", namespace = "visits")]
struct Visit {
    count: u32,
}

fn main() {}
