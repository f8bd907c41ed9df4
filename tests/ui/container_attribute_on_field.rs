use carafe::Session;

#[derive(Session)]
struct Visit {
    #[session(namespace = "visit")]
    count: u32,
}

fn main() {}
