use carafe::Session;

#[derive(Session)]
#[session(auto, namespace = "visit")]
#[session(auto)]
struct Visit {
    count: u32,
}

fn main() {}
