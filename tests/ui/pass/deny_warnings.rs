// The generated code adds no warning under strict lints.
#![forbid(unsafe_code)]
#![deny(warnings)]
#![deny(
    future_incompatible,
    let_underscore,
    nonstandard_style,
    rust_2018_compatibility,
    rust_2018_idioms,
    rust_2021_compatibility,
    unused,
    elided_lifetimes_in_paths,
    explicit_outlives_requirements,
    macro_use_extern_crate,
    meta_variable_misuse,
    missing_copy_implementations,
    missing_debug_implementations,
    missing_docs,
    non_ascii_idents,
    noop_method_call,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    unreachable_pub,
    unused_crate_dependencies,
    unused_extern_crates,
    unused_import_braces,
    unused_lifetimes,
    unused_qualifications,
    unused_results,
    variant_size_differences
)]
#![allow(unused_crate_dependencies)]
//! A strictly linted crate.

use carafe::{Session, SessionData};

/// A documented typed session.
#[derive(Session, Debug, Default)]
#[session(auto, default, namespace = "strict")]
pub struct Strict {
    /// A counter.
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

fn one() -> u8 {
    1
}

/// Only skipped fields: no parameter goes unused.
#[derive(Session, Debug)]
pub struct NothingStored {
    /// Skipped.
    #[session(skip)]
    pub scratch: Vec<u8>,
}

/// No fields at all.
#[derive(Session, Debug, Clone, Copy)]
pub struct Empty {}

/// Required fields only.
#[derive(Session, Debug)]
pub struct Required {
    /// Required.
    pub name: String,
    /// Missing gives `None`.
    pub nickname: Option<String>,
}

fn main() {
    assert_eq!(
        Strict::KEYS,
        ["strict.count", "strict.uid", "strict.tags", "strict.one"]
    );
    assert!(NothingStored::KEYS.is_empty() && Empty::KEYS.is_empty());
    assert_eq!(Required::KEYS.len(), 2);
}
