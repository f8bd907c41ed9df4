use carafe::Session;

#[derive(Session)]
union Visit {
    count: u32,
    flags: u64,
}

fn main() {}
