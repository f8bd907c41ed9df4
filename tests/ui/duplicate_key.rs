use carafe::Session;

#[derive(Session)]
#[session(namespace = "visit")]
struct Visit {
    #[session(rename = "total")]
    count: u32,
    total: u64,
}

fn main() {}
