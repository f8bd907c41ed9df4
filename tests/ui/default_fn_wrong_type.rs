use carafe::Session;

fn zero() -> u64 {
    0
}

#[derive(Session)]
struct Visit {
    #[session(default = "zero")]
    count: u32,
}

fn main() {}
