use carafe::Session;

#[derive(Session)]
struct Visit {
    #[session(default = "1 + 2")]
    count: u32,
}

fn main() {}
