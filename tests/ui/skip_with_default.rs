use carafe::Session;

#[derive(Session)]
struct Visit {
    count: u32,
    #[session(skip, default)]
    scratch: Vec<u8>,
}

fn main() {}
