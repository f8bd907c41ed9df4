use carafe::Session;

#[derive(Session)]
#[session(crate = "carafe-runtime")]
struct Visit {
    count: u32,
}

fn main() {}
