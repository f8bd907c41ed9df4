use carafe::{Session, SessionData};

#[derive(Session)]
#[session(auto)]
struct Visit {
    count: u32,
}

#[derive(Session)]
struct Manual {
    count: u32,
}

fn main() {
    assert!(Visit::AUTO);
    assert!(!Manual::AUTO);
    assert_eq!(Visit::KEYS, ["count"]);
}
