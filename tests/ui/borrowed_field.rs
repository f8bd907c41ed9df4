use carafe::Session;

#[derive(Session)]
struct Visit {
    count: u32,
    name: &'static str,
}

fn main() {}
