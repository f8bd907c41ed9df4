use carafe::Session;

#[derive(Session)]
struct Visit {
    count: u32,
    #[session(rename = "tmp", skip)]
    scratch: Vec<u8>,
}

fn main() {}
