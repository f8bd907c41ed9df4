use std::cell::Cell;

use carafe::Session;

#[derive(Session)]
struct Visit {
    count: Cell<u32>,
}

fn main() {}
