use carafe::Session;

#[derive(Session)]
#[session(namespace = "my visit")]
struct Visit {
    count: u32,
}

fn main() {}
