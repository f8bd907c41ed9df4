//! The `#[derive(Session)]` macro of [carafe](https://docs.rs/carafe).
//!
//! Do not depend on this crate directly: use `carafe::Session`, which
//! re-exports the derive (as `serde` re-exports `serde_derive`) and whose
//! documentation describes every attribute with examples. The generated code
//! reaches the runtime only through `::carafe::__private` (or the path given
//! by `#[session(crate = "...")]`).
//!
//! A struct deriving `Session` is a typed view of a session: each stored
//! field is one key of the session's dictionary, `namespace.field` (or the
//! bare field name without a namespace).
//!
//! | where     | attribute                  | effect |
//! |-----------|----------------------------|--------|
//! | struct    | `auto`                     | save the struct's changes at the end of the request with no call |
//! | struct    | `namespace = "name"`       | keys become `name.field` |
//! | struct    | `default`                  | a missing or undecodable field takes its value from the struct's `Default` |
//! | struct    | `crate = "path"`           | path to the carafe runtime, for crates that re-export it |
//! | field     | `rename = "key"`           | key used instead of the field's name |
//! | field     | `default`                  | a missing or undecodable field takes `Default::default()` |
//! | field     | `default = "path::to::fn"` | a missing or undecodable field takes `path::to::fn()` |
//! | field     | `skip`                     | not stored, not read: the field takes its default |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate proc_macro;

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives `carafe::SessionData`, making the struct usable as a typed
/// session through the `carafe::Typed<T>` extractor.
///
/// Each stored field is one session key (`namespace.field`, or the field's
/// name without a namespace); field types must be `Serialize` and
/// `DeserializeOwned`. A field without a default makes a session that lacks
/// it fail to load with a clear error (an `Option` field is `None` instead).
///
/// Struct attributes: `#[session(auto)]`, `#[session(namespace = "...")]`,
/// `#[session(default)]`, `#[session(crate = "...")]`. Field attributes:
/// `#[session(rename = "...")]`, `#[session(default)]`,
/// `#[session(default = "path::to::fn")]`, `#[session(skip)]`.
///
/// Only structs with named fields and no generic parameters are supported.
///
/// ```
/// use carafe::{Session, Typed};
///
/// #[derive(Session, Default)]
/// #[session(auto, namespace = "visit")]
/// struct Visit {
///     #[session(default)]
///     count: u32,
///     #[session(rename = "uid")]
///     user_id: Option<u64>,
///     #[session(skip)]
///     scratch: Vec<u8>,
/// }
///
/// async fn index(mut visit: Typed<Visit>) -> String {
///     visit.count += 1;
///     format!("count: {}", visit.count)
/// }
/// ```
// The attribute documentation that `carafe` shows on its re-export of this
// derive; included here too so that `cargo test -p carafe-macros --doc` runs
// its examples against the runtime (a dev-dependency).
#[cfg_attr(doctest, doc = include_str!("../ATTRIBUTES.md"))]
#[proc_macro_derive(Session, attributes(session))]
pub fn derive_session(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
