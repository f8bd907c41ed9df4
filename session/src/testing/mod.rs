//! Helpers for an application's own tests (feature `test-util`), after
//! Django's test `Client.session` and `force_login` and axum-test's cookie
//! jar:
//!
//! * [`SessionLayer::create_session`] and [`SessionLayer::create_typed`]
//!   put a session with the given data into the layer's store (or, for the
//!   cookie store, into a cookie) and give the `Cookie` header that names it:
//!   log a test user in without going through the login form;
//! * [`SessionLayer::read_session`] reads the session a cookie names, as
//!   the next request would see it;
//! * [`TestClient`] sends requests to a `Router` through `oneshot` (no
//!   socket) and keeps the cookies its responses set, as a browser does.
//!
//! They run the layer's own load and save code, so a session made here is
//! exactly what a request would have made (signed, with the configured
//! expiry).
//!
//! ```
//! use axum::routing::get;
//! use axum::Router;
//! use carafe::testing::TestClient;
//! use carafe::{MemoryStore, Session, SessionLayer};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = SessionLayer::builder(MemoryStore::new()).secret([7u8; 32]).build().unwrap();
//! let app = Router::new()
//!     .route("/whoami", get(|s: Session| async move { s.get::<String>("user").unwrap().unwrap_or_default() }))
//!     .layer(layer.clone());
//!
//! let mut data = carafe::store::Data::new();
//! data.insert("user".into(), "ada".into());
//! let cookie = layer.create_session(data).await.unwrap();
//! let mut client = TestClient::new(app).with_cookie(&cookie);
//! assert_eq!(client.get("/whoami").await.text(), "ada");
//! # });
//! ```

use http::HeaderValue;

use crate::error::SessionError;
use crate::layer::SessionLayer;
use crate::record::Data;
use crate::request::plan::Outcome;
use crate::request::state::Origin;
use crate::request::tracked::Saver;
use crate::request::Inner;
use crate::session::Session;
use crate::typed::{SessionData, Typed};
use crate::wire::CookieAction;

mod client;

pub use client::{TestClient, TestResponse};

impl SessionLayer {
    /// Makes a new session holding `data` and returns the `Cookie` header
    /// value (`name=value`) that names it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build().unwrap();
    /// let mut data = carafe::store::Data::new();
    /// data.insert("user".into(), "ada".into());
    /// let cookie = layer.create_session(data).await.unwrap();
    /// assert!(cookie.starts_with("__Host-carafe.sid="));
    /// # });
    /// ```
    pub async fn create_session(&self, data: Data) -> Result<String, SessionError> {
        self.create_with(|session| {
            session.with_state(|state| {
                for (key, value) in data {
                    state.set(key, value, Saver::Auto);
                }
            });
        })
        .await
    }

    /// Makes a new session holding `value` (every stored field of a
    /// `#[derive(Session)]` struct) and returns the `Cookie` header value
    /// that names it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails.
    ///
    /// ```
    /// #[derive(carafe::Session)]
    /// #[session(namespace = "auth")]
    /// struct Auth { user: String }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build().unwrap();
    /// let cookie = layer.create_typed(Auth { user: "ada".into() }).await.unwrap();
    /// let data = layer.read_session(&cookie).await.unwrap().unwrap();
    /// assert_eq!(data["auth.user"], "ada");
    /// # });
    /// ```
    pub async fn create_typed<T: SessionData>(&self, value: T) -> Result<String, SessionError> {
        self.create_with(|session| {
            let mut view = Typed::insert(session.clone(), value);
            view.save();
        })
        .await
    }

    async fn create_with(&self, fill: impl FnOnce(&Session)) -> Result<String, SessionError> {
        let shared = self.shared();
        let inner = std::sync::Arc::new(Inner::new(shared.clone(), Vec::new()));
        inner.load().await?;
        let session = Session::new(inner.clone());
        fill(&session);
        session.save();
        drop(session);
        match inner.finish(Outcome::Answered).await? {
            CookieAction::Set { value, .. } => Ok(format!("{}={value}", shared.config.cookie_name)),
            // An empty session is not saved.
            CookieAction::Keep | CookieAction::Remove => Ok(String::new()),
        }
    }

    /// The data of the session that `cookie` (a `Cookie` header value, such
    /// as [`create_session`](Self::create_session) or a response's
    /// `Set-Cookie` gives) names, as the next request would load it; `None`
    /// when it names no live session. Writes nothing (an expired or corrupt
    /// record is deleted, as a request would).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build().unwrap();
    /// assert_eq!(layer.read_session("__Host-carafe.sid=forged").await.unwrap(), None);
    /// # });
    /// ```
    pub async fn read_session(&self, cookie: &str) -> Result<Option<Data>, SessionError> {
        let Ok(header) = HeaderValue::from_str(cookie) else {
            return Ok(None);
        };
        let inner = Inner::new(self.shared().clone(), vec![header]);
        inner.load().await?;
        let state = inner.lock();
        Ok(match state.origin {
            Origin::Valid { .. } => Some(state.tracked.data().clone()),
            Origin::NoCookie | Origin::Stale => None,
        })
    }
}
