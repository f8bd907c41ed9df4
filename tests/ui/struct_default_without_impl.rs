use carafe::Session;

#[derive(Session)]
#[session(default)]
struct Visit {
    count: u32,
}

fn main() {}
