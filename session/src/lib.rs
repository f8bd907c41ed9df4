//! Typed, lazily loaded, signed web sessions for axum and any tower HTTP
//! stack, after Python Beaker's `SessionMiddleware`.
//!
//! * [`SessionLayer`]: the middleware. One per application.
//! * [`Session`](struct@Session): the untyped, dict-style session; an axum extractor.
//! * `#[derive(Session)]` and [`Typed`]: a plain struct as a typed,
//!   dirty-tracked view of the session (see [`Typed`] and the derive's
//!   documentation).
//! * Stores: [`MemoryStore`], [`FileStore`], and behind features Redis,
//!   PostgreSQL, SQLite and an encrypted cookie store (see [`store`]).
//!
//! ```
//! use axum::{routing::get, Router};
//! use carafe::{FileStore, Session, SessionLayer, Typed};
//!
//! #[derive(Session, Default)]
//! #[session(auto, default, namespace = "visit")]
//! struct Visit {
//!     count: u32,
//! }
//!
//! async fn index(mut visit: Typed<Visit>) -> String {
//!     visit.count += 1;
//!     format!("count: {}", visit.count)
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let layer = SessionLayer::builder(FileStore::new(dir.path())?)
//!     .secret(b"0123456789abcdef0123456789abcdef")
//!     .build()?;
//! let app: Router = Router::new().route("/", get(index)).layer(layer);
//! # Ok(()) }
//! ```
//!
//! # When the session is written
//!
//! Nothing is read until a handler extracts the session, and nothing is
//! written unless [`Session::save`] was called, `auto` is on (for the layer,
//! or `#[session(auto)]` for a typed struct) and the session was modified,
//! or [`Session::persist`] wrote it at once. A new session that was never
//! modified is neither stored nor given a cookie. A request whose handler
//! answers 5xx or panics writes nothing it deferred (deletions from
//! [`Session::delete`] and [`Session::invalidate`] still happen). The layer
//! writes after the handler has returned, so there is no "save before
//! start_response" ordering to get wrong.
//!
//! With `save_accessed_time` on (the default), reading a session refreshes
//! its accessed time in the store at most once per
//! `accessed_time_interval`; such a refresh writes only timestamps.
//!
//! # Security
//!
//! Session ids carry 122 random bits; the cookie holds the id and an
//! HMAC-SHA256 tag checked in constant time. A cookie that fails
//! verification, or names an unknown or expired session, gives a fresh
//! session with a fresh id: ids are never adopted. Ids are never logged
//! (logs show a short hash), and stores file records under a hash of the id.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

// Modules in the order their imports point: each uses only those above it
// (and `error`).
mod error;

mod clock;
mod id;
mod key;
mod record;

mod config;
mod wire;

mod backend;
pub mod store;

mod request;

mod owner;

mod extract;
mod session;
mod typed;

pub mod csrf;
pub mod flash;

mod builder;
mod layer;
mod reaper;

#[cfg(feature = "test-util")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use backend::IntoBackend;
pub use builder::SessionLayerBuilder;
pub use clock::{Clock, MockClock, SystemClock};
pub use config::{CookieExpiry, SessionExpiry};
pub use cookie::SameSite;
pub use error::{ConfigError, SessionError, StoreError, TypedError};
pub use extract::SessionRejection;
pub use id::SessionId;
pub use key::{Key, MIN_SECRET_LEN};
pub use layer::{ResponseFuture, SessionLayer, SessionService};
pub use owner::OwnedSession;
pub use reaper::Reaper;
pub use session::Session;
#[cfg(feature = "cookie-store")]
pub use store::CookieStore;
#[cfg(feature = "postgres-store")]
pub use store::PostgresStore;
#[cfg(feature = "redis-store")]
pub use store::RedisStore;
#[cfg(feature = "sqlite-store")]
pub use store::SqliteStore;
pub use store::{FileStore, MemoryStore, SessionStore};
pub use typed::{SessionData, Typed};

#[cfg(feature = "macros")]
#[doc = include_str!("../../session-macros/ATTRIBUTES.md")]
pub use carafe_macros::Session;
