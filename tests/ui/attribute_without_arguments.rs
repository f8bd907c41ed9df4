use carafe::Session;

#[derive(Session)]
#[session]
struct Visit {
    count: u32,
}

fn main() {}
