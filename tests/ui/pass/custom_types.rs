use std::collections::{BTreeMap, HashMap};

use carafe::{Session, SessionData};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
enum Theme {
    #[default]
    Light,
    Dark,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Item {
    sku: String,
    quantity: u32,
}

type Items = Vec<Item>;

#[derive(Session, Debug)]
#[session(namespace = "cart")]
struct Cart {
    items: Items,
    #[session(default)]
    theme: Theme,
    coupons: HashMap<String, u32>,
    history: BTreeMap<u64, (String, Option<bool>)>,
    note: Option<Box<str>>,
    json: serde_json::Value,
    pair: [u8; 2],
    unit: (),
}

fn main() {
    assert_eq!(
        Cart::KEYS,
        [
            "cart.items",
            "cart.theme",
            "cart.coupons",
            "cart.history",
            "cart.note",
            "cart.json",
            "cart.pair",
            "cart.unit"
        ]
    );
}
