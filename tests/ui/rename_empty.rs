use carafe::Session;

#[derive(Session)]
struct Visit {
    #[session(rename = "")]
    count: u32,
}

fn main() {}
