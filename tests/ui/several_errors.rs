use carafe::Session;

#[derive(Session)]
#[session(namespace = "", autosave)]
struct Visit {
    #[session(rename = 1)]
    count: u32,
    #[session(skip, skip)]
    scratch: Vec<u8>,
}

fn main() {}
