//! The generated code raises no lint in user code, rustc's or clippy's
//! (`cargo clippy -p carafe-macros --tests -- -D warnings`; without clippy
//! this file still checks rustc's strict lints).
#![forbid(unsafe_code)]
#![deny(
    warnings,
    rust_2018_idioms,
    unused_qualifications,
    unused_results,
    single_use_lifetimes
)]
#![deny(clippy::all, clippy::pedantic, clippy::nursery)]
#![allow(unused_crate_dependencies)]

use carafe::{Session, SessionData};

const fn one() -> u8 {
    1
}

/// Every attribute at once.
#[derive(Session, Debug, Default)]
#[session(auto, default, namespace = "strict")]
pub struct Strict {
    /// Required.
    pub count: u32,
    /// Renamed.
    #[session(rename = "uid")]
    pub user_id: Option<u64>,
    /// Defaulted.
    #[session(default)]
    pub tags: Vec<String>,
    /// Defaulted by a function.
    #[session(default = "one")]
    pub one: u8,
    /// Skipped.
    #[session(skip)]
    pub scratch: Vec<u8>,
}

/// Required fields, no struct default.
#[derive(Session, Debug)]
pub struct Required {
    /// Required.
    pub name: String,
    /// Missing is `None`.
    pub nickname: Option<String>,
    /// Raw identifier.
    pub r#type: String,
    /// Defaulted by a function.
    #[session(default = "one")]
    pub one: u8,
    /// Defaulted.
    #[session(default)]
    pub tags: Vec<String>,
    /// Skipped.
    #[session(skip)]
    pub scratch: Vec<u8>,
}

/// Nothing stored.
#[derive(Session, Debug)]
pub struct OnlySkipped {
    /// Skipped.
    #[session(skip)]
    pub scratch: Vec<u8>,
}

/// No fields.
#[derive(Session, Debug, Clone, Copy)]
pub struct Empty {}

#[test]
fn strict_structs_compile() {
    assert_eq!(Strict::KEYS.len(), 4);
    assert_eq!(Required::KEYS, ["name", "nickname", "type", "one", "tags"]);
    assert!(OnlySkipped::KEYS.is_empty() && Empty::KEYS.is_empty());
}
