use carafe::Session;

#[derive(Session)]
#[session(auto, autosave)]
struct Visit {
    count: u32,
}

fn main() {}
