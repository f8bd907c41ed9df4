use carafe::{Session, SessionData};

// A skipped field is neither stored nor read: its type needs `Default`, not
// serde.
#[derive(Default)]
struct Scratch {
    hits: u32,
}

#[derive(Session)]
struct Visit {
    count: u32,
    #[session(skip)]
    scratch: Scratch,
    #[session(skip)]
    buffer: Vec<u8>,
}

#[derive(Session)]
struct OnlySkipped {
    #[session(skip)]
    scratch: Vec<u8>,
}

#[derive(Session)]
struct Empty {}

fn main() {
    assert_eq!(Visit::KEYS, ["count"]);
    assert!(OnlySkipped::KEYS.is_empty());
    assert!(Empty::KEYS.is_empty());
    let _: fn(&Visit) -> (u32, usize) = |visit| (visit.scratch.hits, visit.buffer.len());
    let _: fn(&OnlySkipped) -> usize = |only| only.scratch.len();
}
