use carafe::Session;

#[derive(Session)]
struct Visit {
    #[session(rename = "n")]
    #[session(rename = "count")]
    count: u32,
}

fn main() {}
