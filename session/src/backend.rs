//! Where sessions live: a server-side [`SessionStore`], or a client-side
//! codec that keeps the whole session in the cookie. Two variants of one
//! thing, so that neither needs a stand-in for the other.

use std::sync::Arc;

use crate::config::Config;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::key::Keys;
use crate::record::Record;
use crate::store::SessionStore;

/// How a client-side store turns a session into a cookie value and back.
/// Implemented by the cookie store.
pub(crate) trait ClientCodec: Send + Sync + std::fmt::Debug {
    /// The session in a cookie value, or `None` for anything that does not
    /// decrypt and decode (never an error: a bad cookie is no session).
    fn decode(&self, keys: &Keys, value: &str) -> Option<(SessionId, Record)>;
    /// The cookie value for a session. `config` gives the cookie's name and
    /// attributes, so that the codec can measure the whole `Set-Cookie`.
    fn encode(
        &self,
        keys: &Keys,
        config: &Config,
        id: &SessionId,
        record: &Record,
    ) -> Result<String, StoreError>;
}

/// What [`IntoBackend`] gives the layer. Not public API.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Backend(pub(crate) Kind);

/// The two kinds of backend.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Records on a server, found by the id in a signed cookie.
    Server(Arc<dyn SessionStore>),
    /// The record is the cookie.
    Client(Arc<dyn ClientCodec>),
}

impl Backend {
    /// Whether the session lives in the cookie.
    pub(crate) fn is_client(&self) -> bool {
        matches!(self.0, Kind::Client(_))
    }

    /// A client-side backend.
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) fn client(codec: impl ClientCodec + 'static) -> Self {
        Backend(Kind::Client(Arc::new(codec)))
    }

    /// A short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match &self.0 {
            Kind::Server(store) => store.name(),
            Kind::Client(_) => "cookie",
        }
    }
}

/// Where sessions live: any [`SessionStore`], or (with the `cookie-store`
/// feature) the client-side `CookieStore`. Sealed: implement
/// [`SessionStore`] instead.
///
/// ```
/// fn layer(store: impl carafe::IntoBackend) -> carafe::SessionLayerBuilder {
///     carafe::SessionLayer::builder(store)
/// }
/// let _ = layer(carafe::MemoryStore::new());
/// ```
pub trait IntoBackend: sealed::Sealed {
    #[doc(hidden)]
    fn into_backend(self) -> Backend;
}

impl<S: SessionStore> IntoBackend for S {
    fn into_backend(self) -> Backend {
        Backend(Kind::Server(Arc::new(self)))
    }
}

impl<S: SessionStore> sealed::Sealed for S {}

pub(crate) mod sealed {
    pub trait Sealed {}
}
