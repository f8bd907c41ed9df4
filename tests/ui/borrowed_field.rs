use carafe::Session;

#[derive(Session)]
struct Visit {
    count: u32,
    name: Option<&'static str>,
}

fn main() {}
