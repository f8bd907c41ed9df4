use carafe::Session;

#[derive(Session)]
struct Visit;

fn main() {}
