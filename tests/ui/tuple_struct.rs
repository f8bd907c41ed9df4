use carafe::Session;

#[derive(Session)]
struct Visit(u32, String);

fn main() {}
