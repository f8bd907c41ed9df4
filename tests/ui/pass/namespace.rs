use carafe::{Session, SessionData};

#[derive(Session)]
#[session(namespace = "visit")]
struct Visit {
    count: u32,
    last_page: Option<String>,
}

#[derive(Session)]
#[session(namespace = "app.v2-cart_items")]
struct Cart {
    items: Vec<String>,
}

fn main() {
    assert!(!Visit::AUTO);
    assert_eq!(Visit::KEYS, ["visit.count", "visit.last_page"]);
    assert_eq!(Cart::KEYS, ["app.v2-cart_items.items"]);
}
