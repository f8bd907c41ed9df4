//! What the shop keeps: its catalogue and demo users (in code), and the
//! visitor's typed sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A product on sale.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    /// Its id in URLs and the cart.
    pub id: &'static str,
    /// What the page shows.
    pub name: &'static str,
    /// Price in cents.
    pub cents: u32,
}

/// The catalogue.
pub const PRODUCTS: [Product; 3] = [
    Product {
        id: "darjeeling",
        name: "Darjeeling",
        cents: 850,
    },
    Product {
        id: "sencha",
        name: "Sencha",
        cents: 1200,
    },
    Product {
        id: "assam",
        name: "Assam",
        cents: 690,
    },
];

/// The product with `id`.
pub fn product(id: &str) -> Option<Product> {
    PRODUCTS.iter().copied().find(|p| p.id == id)
}

/// The demo users and their passwords. A real application keeps password
/// hashes (argon2) in a database; the comparison is constant-time either way.
const USERS: [(&str, &str); 2] = [("ada", "lovelace"), ("alan", "turing")];

/// Whether `password` is `user`'s.
pub fn check_password(user: &str, password: &str) -> bool {
    USERS
        .iter()
        .any(|(name, pw)| *name == user && bool::from(pw.as_bytes().ct_eq(password.as_bytes())))
}

/// Who is logged in: session key `auth.user`. Not `auto`: the login handler
/// saves it (with the cycled id) explicitly.
#[derive(carafe::Session, Default, Debug)]
#[session(default, namespace = "auth")]
pub struct Auth {
    /// The user's name.
    pub user: Option<String>,
}

/// The cart: product id to quantity, session key `cart.items`. Kept for
/// anonymous visitors too, and across the login (the id is cycled, the data
/// moves).
#[derive(carafe::Session, Default, Debug)]
#[session(auto, default, namespace = "cart")]
pub struct Cart {
    /// Product id to quantity.
    pub items: BTreeMap<String, u32>,
}

impl Cart {
    /// How many items, all products together.
    pub fn count(&self) -> u32 {
        self.items.values().sum()
    }

    /// The total in cents.
    pub fn total_cents(&self) -> u32 {
        self.items
            .iter()
            .filter_map(|(id, n)| product(id).map(|p| p.cents * n))
            .sum()
    }
}

/// The page's colours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Dark text on light.
    #[default]
    Light,
    /// Light text on dark.
    Dark,
}

/// Preferences: session key `prefs.theme`, saved with no call.
#[derive(carafe::Session, Default, Debug)]
#[session(auto, default, namespace = "prefs")]
pub struct Prefs {
    /// The page's colours.
    pub theme: Theme,
}

/// A price for the page: `€8.50`.
pub fn money(cents: u32) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_prices() {
        assert!(check_password("ada", "lovelace"));
        assert!(!check_password("ada", "turing"));
        assert!(!check_password("ada", ""));
        assert!(!check_password("eve", "lovelace"));
        assert_eq!(money(850), "€8.50");
        assert_eq!(money(5), "€0.05");
        let mut cart = Cart::default();
        cart.items.insert("sencha".into(), 2);
        cart.items.insert("gone".into(), 1);
        assert_eq!((cart.count(), cart.total_cents()), (3, 2400));
    }
}
