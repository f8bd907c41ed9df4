use carafe::Session;

#[derive(Session)]
struct Visit {
    #[session(alias = "n")]
    count: u32,
}

fn main() {}
