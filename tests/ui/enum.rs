use carafe::Session;

#[derive(Session)]
enum Visit {
    New,
    Returning { count: u32 },
}

fn main() {}
