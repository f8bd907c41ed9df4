//! Flash messages: set in one request, shown exactly once in a later one,
//! usually after a redirect (Rails' `flash`, Django's messages framework,
//! axum-messages).
//!
//! [`Flash`] is an axum extractor. [`Flash::push`] (or [`info`](Flash::info),
//! [`success`](Flash::success), [`warning`](Flash::warning),
//! [`error`](Flash::error)) adds a message with a [`Level`] and a body of any
//! serde type; [`Flash::take`] answers the session's messages, oldest first,
//! and removes them.
//!
//! ```
//! use axum::response::Redirect;
//! use axum::routing::{get, post};
//! use axum::Router;
//! use carafe::flash::Flash;
//! use carafe::{MemoryStore, SessionLayer};
//!
//! async fn save(flash: Flash) -> Result<Redirect, carafe::SessionError> {
//!     flash.success("Your preferences were saved.")?;
//!     Ok(Redirect::to("/"))
//! }
//!
//! async fn page(flash: Flash) -> Result<String, carafe::SessionError> {
//!     // Plain text here; in HTML, escape the body (it may hold user input).
//!     let mut page = String::new();
//!     for message in flash.take::<String>().await? {
//!         page += &format!("{}: {}\n", message.level, message.body);
//!     }
//!     Ok(page)
//! }
//!
//! # fn main() -> Result<(), carafe::ConfigError> {
//! let app: Router = Router::new()
//!     .route("/", get(page))
//!     .route("/save", post(save))
//!     .layer(SessionLayer::builder(MemoryStore::new()).secret(&[7; 64]).build()?);
//! # Ok(()) }
//! ```
//!
//! # Exactly once
//!
//! Each message is its own session key (`_flash.` followed by its time, a
//! sequence number and a random part), so two overlapping requests that
//! each add a message both keep theirs: the store merges per key. A take
//! removes the messages from the store in one atomic step
//! ([`SessionStore::take_prefixed`](crate::SessionStore::take_prefixed)),
//! so of two overlapping requests that both loaded a message, exactly one
//! shows it; a message added while a take runs is left for the next one.
//! Messages are saved at the end of the request without a `save()` call
//! (whatever the layer's `auto`), like any change, unless the response is a
//! 5xx. A message added and taken in the same request is shown then and
//! never stored.
//!
//! On the cookie store ([`CookieStore`](crate::store::CookieStore)) the
//! session is the cookie, so a take removes the messages from the cookie the
//! response sets; two overlapping requests that carry the same cookie can
//! both show a message there (as with Rails' and Django's cookie storage).
//!
//! # Bad data, and limits
//!
//! A message whose body does not deserialize into the type asked for is not
//! answered by [`Flash::take`]: it stays in the session (put back, saved at
//! the end of the request) for a take with the type it was pushed with,
//! and a warning names its key. So one message of another type never breaks
//! the pages that show the rest. A value under a `_flash.` key that is not a
//! message at all (written through the untyped session) is dropped with a
//! warning. Messages live in the session, which only the server (or, for
//! the cookie store, the server's key) can write: a client cannot forge one.
//!
//! A session holds at most [`MAX_MESSAGES`] messages: a push beyond that
//! drops the oldest, so messages pushed by requests whose pages are never
//! shown (a script's `fetch`) cannot grow a session (or a cookie) until
//! every save fails.
//!
//! Bodies are text the application chose, often with user input in it:
//! escape them when writing HTML (a template crate such as maud does).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SessionError;
use crate::extract::SessionRejection;
use crate::session::Session;

/// The start of every flash message's session key.
///
/// ```
/// assert_eq!(carafe::flash::KEY_PREFIX, "_flash.");
/// ```
pub const KEY_PREFIX: &str = "_flash.";

/// The most messages a session holds: a push beyond this drops the oldest.
///
/// ```
/// assert_eq!(carafe::flash::MAX_MESSAGES, 32);
/// ```
pub const MAX_MESSAGES: usize = 32;

/// Orders messages pushed in the same second by this process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// How a message is meant to be shown.
///
/// Serialized, and shown by [`Display`](fmt::Display), in lowercase
/// (`"info"`, `"success"`, `"warning"`, `"error"`), which suits CSS classes.
///
/// ```
/// use carafe::flash::Level;
/// assert_eq!(Level::Warning.to_string(), "warning");
/// assert_eq!(serde_json::to_string(&Level::Error)?, "\"error\"");
/// assert!(Level::Info < Level::Error);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Information.
    Info,
    /// Something the user asked for worked.
    Success,
    /// Something the user should look at.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's lowercase name.
    ///
    /// ```
    /// assert_eq!(carafe::flash::Level::Success.as_str(), "success");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Success => "success",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flash message: a level and a body of any serde type (a `String` unless
/// said otherwise).
///
/// ```
/// use carafe::flash::{Level, Message};
/// let message = Message { level: Level::Info, body: "Welcome back".to_owned() };
/// assert_eq!(serde_json::to_value(&message)?, serde_json::json!({"level": "info", "body": "Welcome back"}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<T = String> {
    /// How the message is meant to be shown.
    pub level: Level,
    /// What it says.
    pub body: T,
}

/// The flash messages of the current request's session. An axum extractor;
/// see [the module docs](self).
///
/// ```
/// async fn handler(flash: carafe::flash::Flash) -> Result<String, carafe::SessionError> {
///     flash.info("Hello")?;
///     Ok(format!("{} message(s) waiting", flash.len()))
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Clone, Debug)]
pub struct Flash {
    session: Session,
}

impl Flash {
    /// The flash messages of `session` (for code that already holds the
    /// session, such as a middleware).
    ///
    /// ```
    /// fn notify(session: &carafe::Session) -> Result<(), carafe::SessionError> {
    ///     carafe::flash::Flash::new(session).warning("Your trial ends tomorrow")
    /// }
    /// ```
    #[must_use]
    pub fn new(session: &Session) -> Self {
        Flash {
            session: session.clone(),
        }
    }

    /// Adds a message, saved at the end of the request (unless it answers
    /// 5xx) with no `save()` call.
    ///
    /// # Errors
    ///
    /// [`SessionError::Serialize`] when `body` cannot be turned into JSON;
    /// [`SessionError::Deleted`] after [`Session::delete`] in this request
    /// (use [`Session::invalidate`] to log out and still show a message).
    ///
    /// ```
    /// use carafe::flash::{Flash, Level};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Added { product: String, quantity: u32 }
    ///
    /// async fn add(flash: Flash) -> Result<(), carafe::SessionError> {
    ///     flash.push(Level::Success, Added { product: "tea".into(), quantity: 2 })
    /// }
    /// ```
    pub fn push<T: Serialize>(&self, level: Level, body: T) -> Result<(), SessionError> {
        let key = self.next_key();
        let body = serde_json::to_value(&body).map_err(|source| SessionError::Serialize {
            key: key.clone(),
            source,
        })?;
        let message = Message { level, body };
        let value = serde_json::to_value(&message).map_err(|source| SessionError::Serialize {
            key: key.clone(),
            source,
        })?;
        let mut keys: Vec<String> = self
            .session
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(KEY_PREFIX))
            .collect();
        if keys.len() >= MAX_MESSAGES {
            keys.sort();
            for oldest in &keys[..=keys.len() - MAX_MESSAGES] {
                self.session.remove_auto(oldest);
            }
            tracing::debug!(
                max = MAX_MESSAGES,
                "flash messages at their limit: the oldest was dropped"
            );
        }
        self.session.insert_auto(key, value)
    }

    /// Adds a message at [`Level::Info`].
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) -> Result<(), carafe::SessionError> {
    /// flash.info("Your order has shipped")?;
    /// # Ok(()) }
    /// ```
    pub fn info<T: Serialize>(&self, body: T) -> Result<(), SessionError> {
        self.push(Level::Info, body)
    }

    /// Adds a message at [`Level::Success`].
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) -> Result<(), carafe::SessionError> {
    /// flash.success("Saved")?;
    /// # Ok(()) }
    /// ```
    pub fn success<T: Serialize>(&self, body: T) -> Result<(), SessionError> {
        self.push(Level::Success, body)
    }

    /// Adds a message at [`Level::Warning`].
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) -> Result<(), carafe::SessionError> {
    /// flash.warning("Only 2 left in stock")?;
    /// # Ok(()) }
    /// ```
    pub fn warning<T: Serialize>(&self, body: T) -> Result<(), SessionError> {
        self.push(Level::Warning, body)
    }

    /// Adds a message at [`Level::Error`].
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) -> Result<(), carafe::SessionError> {
    /// flash.error("The card was declined")?;
    /// # Ok(()) }
    /// ```
    pub fn error<T: Serialize>(&self, body: T) -> Result<(), SessionError> {
        self.push(Level::Error, body)
    }

    /// How many messages the session holds now, as this request sees it
    /// (nothing is taken).
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) -> Result<(), carafe::SessionError> {
    /// let before = flash.len();
    /// flash.info("one more")?;
    /// assert_eq!(flash.len(), before + 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.session
            .keys()
            .iter()
            .filter(|k| k.starts_with(KEY_PREFIX))
            .count()
    }

    /// Whether the session holds no messages, as this request sees it.
    ///
    /// ```
    /// # fn f(flash: carafe::flash::Flash) {
    /// if flash.is_empty() { /* no banner */ }
    /// # }
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers the session's messages, oldest first, and removes them: from
    /// the store at once and atomically, so that no other request shows
    /// them (see [exactly once](self#exactly-once)). Use
    /// `take::<serde_json::Value>()` for bodies of any shape. A message whose
    /// body does not fit `T` is not answered: it stays in the session (see
    /// [bad data](self#bad-data-and-limits)). A session with no message
    /// loaded costs no store call.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails or times out. After a
    /// failure nothing was taken; after a timeout the store may have taken
    /// the messages all the same, and they are then not shown.
    ///
    /// ```
    /// use carafe::flash::{Flash, Level};
    ///
    /// async fn banner(flash: Flash) -> Result<String, carafe::SessionError> {
    ///     let errors = flash
    ///         .take::<String>()
    ///         .await?
    ///         .into_iter()
    ///         .filter(|m| m.level == Level::Error)
    ///         .count();
    ///     Ok(format!("{errors} error(s)"))
    /// }
    /// ```
    pub async fn take<T: DeserializeOwned>(&self) -> Result<Vec<Message<T>>, SessionError> {
        let taken = self.session.take_prefixed(KEY_PREFIX).await?;
        let mut entries: Vec<(String, Value)> = taken.into_iter().collect();
        // Keys sort in push order (fixed-width time and sequence fields).
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut messages = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(message) = stored_message(&value) else {
                tracing::warn!("dropped a session value under a flash key that is not a flash message");
                continue;
            };
            match serde_json::from_value::<T>(message.body) {
                Ok(body) => messages.push(Message {
                    level: message.level,
                    body,
                }),
                Err(err) => {
                    // Left for a take with the type it was pushed with.
                    tracing::warn!(
                        key,
                        error = crate::error::category(&err),
                        "a flash message does not fit the type asked for; it stays in the session"
                    );
                    self.session.insert_auto(key, value)?;
                }
            }
        }
        Ok(messages)
    }

    /// The session key for the next message: its time, a sequence number
    /// and a random part, so that keys sort in the order messages were
    /// pushed (within one process; by the second across processes) and two
    /// requests never pick the same key.
    fn next_key(&self) -> String {
        let secs = self.session.now().unix_timestamp().max(0);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let random = uuid::Uuid::new_v4().simple();
        format!("{KEY_PREFIX}{secs:012}.{seq:012}.{random}")
    }
}

/// A stored message with its body still JSON; `None` for a value that is
/// not a message.
fn stored_message(value: &Value) -> Option<Message<Value>> {
    serde_json::from_value(value.clone()).ok()
}

impl<S: Send + Sync> FromRequestParts<S> for Flash {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        Ok(Flash { session })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_messages_are_objects_with_a_level_and_a_body() {
        let cases = [
            (serde_json::json!({"level": "info", "body": "hi"}), true),
            (serde_json::json!({"level": "error", "body": {"code": 7}}), true),
            (serde_json::json!({"level": "loud", "body": "hi"}), false),
            (serde_json::json!({"body": "hi"}), false),
            (serde_json::json!("hi"), false),
            (serde_json::json!(5), false),
        ];
        for (value, ok) in cases {
            assert_eq!(stored_message(&value).is_some(), ok, "{value}");
        }
    }
}
