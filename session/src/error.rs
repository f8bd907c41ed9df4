//! The errors carafe reports.

use std::time::Duration;

/// A mistake in the layer's configuration, reported by
/// [`SessionLayerBuilder::build`](crate::SessionLayerBuilder::build) before
/// the application serves a single request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret was given and the layer cannot sign cookies.
    #[error("no secret: call SessionLayerBuilder::secret (or ::key) with at least 32 bytes")]
    MissingSecret,
    /// A secret shorter than the minimum.
    #[error("secret too short: {len} bytes, at least {min} are needed")]
    SecretTooShort {
        /// The length given.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A cookie name that is empty or has characters a cookie name cannot have.
    #[error("invalid cookie name {0:?}: use letters, digits and !#$%&'*+-.^_`|~")]
    InvalidCookieName(String),
    /// A cookie path or domain with characters a cookie attribute cannot have.
    #[error("invalid cookie {attribute} {value:?}")]
    InvalidCookieAttribute {
        /// `"path"` or `"domain"`.
        attribute: &'static str,
        /// The value given.
        value: String,
    },
    /// `SameSite=None` without `Secure`: browsers drop such cookies.
    #[error("SameSite=None requires Secure: browsers reject the cookie otherwise")]
    SameSiteNoneWithoutSecure,
    /// A duration that must be positive was zero or negative.
    #[error("{option} must be positive")]
    NonPositive {
        /// The option's name.
        option: &'static str,
    },
    /// A cookie name with the `__Host-` prefix without the attributes the
    /// prefix requires: browsers silently refuse to store such a cookie.
    #[error(
        "the cookie name {name:?} has the __Host- prefix, which needs Secure, Path=/ and no \
         Domain: {problem}"
    )]
    HostPrefix {
        /// The cookie name.
        name: String,
        /// Which rule is broken.
        problem: &'static str,
    },
    /// A cookie name with the `__Secure-` prefix without `Secure`.
    #[error("the cookie name {0:?} has the __Secure- prefix, which needs Secure")]
    SecurePrefix(String),
    /// The store given is not usable with the other options.
    #[error("{0}")]
    Store(String),
}

/// An error from a session store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's backend (database, server, file system) failed.
    #[error("session store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file-system error.
    #[error("session store I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The record exists but cannot be decoded. The runtime treats it as no
    /// session (with a warning) and deletes it.
    #[error("corrupt session record: {0}")]
    Corrupt(String),
    /// A create found a record under the same key.
    #[error("a session record already exists under this key")]
    Conflict,
    /// The store did not answer in time.
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
    /// The file store's data directory is not safe to keep sessions in: it
    /// is writable by other users, or owned by another user, so they could
    /// plant, replace or read records.
    #[error("unsafe session directory {}: {problem}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The session is too large for the store.
    #[error("session too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The store's limit.
        limit: usize,
    },
    /// The store cannot do what was asked: a custom store that does not
    /// implement [`list_owned`](crate::SessionStore::list_owned), or the
    /// cookie store, which keeps no server-side list of sessions (end a
    /// user's cookie sessions by rotating the secret instead).
    #[error("the {store} session store cannot {operation}")]
    Unsupported {
        /// The store's name.
        store: &'static str,
        /// What it was asked to do.
        operation: &'static str,
    },
}

impl StoreError {
    /// Wraps any backend error.
    ///
    /// ```
    /// let err = carafe::StoreError::backend(std::fmt::Error);
    /// assert!(err.to_string().contains("backend"));
    /// ```
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(err))
    }
}

/// An error from a session operation in a handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be turned into JSON (for example a map whose keys
    /// are not strings).
    #[error("session value for key {key:?} cannot be serialized ({})", category(source))]
    Serialize {
        /// The session key.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not deserialize into the type asked for.
    #[error(
        "session value for key {key:?} does not deserialize into the type asked for ({})",
        category(source)
    )]
    Deserialize {
        /// The session key.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A typed session could not be built from the stored data.
    #[error(transparent)]
    Typed(#[from] TypedError),
    /// The session was deleted earlier in this request
    /// ([`Session::delete`](crate::Session::delete)); nothing more is stored.
    /// Use [`Session::invalidate`](crate::Session::invalidate) to go on with
    /// a new session instead.
    #[error("the session was deleted in this request; use invalidate() to start a new one")]
    Deleted,
    /// [`Session::set_expiry`](crate::Session::set_expiry) was given a zero
    /// duration, which would end the session at once.
    #[error("a session's expiry durations must be positive")]
    Expiry,
}

/// What kind of failure a serde_json error is, without its message: the
/// message can quote the value (`invalid type: string "card=4111…"`), and
/// session values never reach a log. The error itself stays available as
/// the `source`.
pub(crate) fn category(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong type or shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// A typed session (`#[derive(Session)]`) could not be built from the
/// session's data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// A field with no default is missing from the session.
    #[error("session key {key:?} for {type_name} is missing and the field has no default")]
    Missing {
        /// The struct.
        type_name: &'static str,
        /// The session key.
        key: &'static str,
    },
    /// A field with no default holds a value that does not deserialize.
    #[error(
        "session key {key:?} for {type_name} does not deserialize ({}) and the field has no default",
        category(source)
    )]
    Invalid {
        /// The struct.
        type_name: &'static str,
        /// The session key.
        key: &'static str,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}
