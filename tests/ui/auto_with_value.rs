use carafe::Session;

#[derive(Session)]
#[session(auto = true)]
struct Visit {
    count: u32,
}

fn main() {}
