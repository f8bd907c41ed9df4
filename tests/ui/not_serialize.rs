use carafe::Session;

struct Opaque;

#[derive(Session)]
struct Visit {
    count: u32,
    secret: Opaque,
}

fn main() {}
