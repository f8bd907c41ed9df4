//! CSRF protection bound to the session (Django's `CsrfViewMiddleware`,
//! Rails' `protect_from_forgery`). Opt-in: add a [`CsrfLayer`] inside the
//! [`SessionLayer`](crate::SessionLayer), and put a [`CsrfToken`] into every
//! form (or send it in the `x-csrf-token` header from scripts).
//!
//! * Each session gets a random secret, kept in the session under
//!   [`SESSION_KEY`] and created the first time a token is asked for, so it
//!   works for anonymous visitors too: a login form carries a token, and a
//!   forged cross-site POST to `/login` (**login CSRF**) is refused.
//! * A token is the secret masked with a fresh random mask, so it differs on
//!   every response and cannot be recovered through compression (BREACH).
//!   Any token of the session is accepted.
//! * Every request whose method is not `GET`, `HEAD`, `OPTIONS` or `TRACE`
//!   is refused with `403 Forbidden` when the browser says it is cross-site
//!   (`Sec-Fetch-Site: cross-site`, or `same-site` from an origin not
//!   trusted), when its `Origin` is not the request's own host (or a
//!   [trusted origin](CsrfLayer::trusted_origin)), or when it carries no
//!   token of this session in the `x-csrf-token` header or, for
//!   `application/x-www-form-urlencoded` bodies, the `csrf_token` field.
//!   Multipart forms must send the header.
//! * The secret moves with the session's data on
//!   [`cycle_id()`](crate::Session::cycle_id), so forms open in other tabs
//!   keep working after a login. Call [`rotate`] at login to change it, as
//!   Django's `login()` does; [`invalidate()`](crate::Session::invalidate)
//!   and [`delete()`](crate::Session::delete) drop it with the rest.
//!
//! ```
//! use axum::routing::get;
//! use axum::Router;
//! use carafe::csrf::{CsrfLayer, CsrfToken};
//! use carafe::{MemoryStore, SessionLayer};
//!
//! async fn form(token: CsrfToken) -> axum::response::Html<String> {
//!     axum::response::Html(format!(
//!         r#"<form method="post">{}<button>Log in</button></form>"#,
//!         token.hidden_input()
//!     ))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/login", get(form).post(|| async { "checked" }))
//!     .layer(CsrfLayer::new())
//!     .layer(SessionLayer::builder(MemoryStore::new()).secret([7u8; 32]).build()?);
//! # Ok::<(), carafe::ConfigError>(())
//! ```

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use serde_json::Value;

use crate::error::SessionError;
use crate::request::tracked::Saver;
use crate::session::Session;

mod layer;
mod origin;
mod token;

pub use layer::{CsrfFuture, CsrfLayer, CsrfService};
use token::Secret;

/// The session key the secret is kept under.
pub const SESSION_KEY: &str = "carafe.csrf";
/// The form field a token is read from (`application/x-www-form-urlencoded`).
pub const FIELD: &str = "csrf_token";
/// The request header a token is read from.
pub const HEADER: &str = "x-csrf-token";

/// Why a request was refused. Answers `403 Forbidden` with the reason as
/// plain text (`413` for a form too large to look into, `400` for a body
/// that could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfError {
    /// The browser said the request comes from another site.
    #[error("CSRF check failed: cross-site request")]
    CrossSite,
    /// The `Origin` header names neither this host nor a trusted origin.
    #[error("CSRF check failed: origin does not match")]
    OriginMismatch,
    /// No token in the header or the form.
    #[error("CSRF check failed: token missing")]
    Missing,
    /// A token that is not one of this session's (another session's, an
    /// old one after a rotation, a forged one), or a session with no secret.
    #[error("CSRF check failed: token invalid")]
    Invalid,
    /// The form body is larger than [`CsrfLayer::form_limit`].
    #[error("CSRF check failed: form too large")]
    TooLarge,
    /// The body could not be read.
    #[error("CSRF check failed: body unreadable")]
    Body,
}

impl IntoResponse for CsrfError {
    fn into_response(self) -> Response {
        let status = match self {
            CsrfError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            CsrfError::Body => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        tracing::debug!(reason = %self, "request refused by the CSRF check");
        (status, format!("{self}\n")).into_response()
    }
}

/// The session's secret, if it has a well-formed one.
fn secret(session: &Session) -> Option<Secret> {
    match session.get_value(SESSION_KEY)? {
        Value::String(text) => Secret::decode(&text),
        _ => None,
    }
}

/// Stores `secret` in the session, saved at the end of the request like an
/// `auto` change (it never carries other unsaved changes along).
fn store(session: &Session, secret: &Secret) -> Result<(), SessionError> {
    session.with_state(|state| {
        if !state.is_live() {
            return Err(SessionError::Deleted);
        }
        state.set(
            SESSION_KEY.to_owned(),
            Value::String(secret.encode()),
            Saver::Auto,
        );
        Ok(())
    })
}

/// Whether `token` belongs to the session.
pub(crate) fn accepts(session: &Session, token: &str) -> bool {
    secret(session).is_some_and(|secret| secret.accepts(token))
}

/// Gives the session a new secret: every token handed out before stops
/// working. Call it at login (after [`cycle_id`](crate::Session::cycle_id)),
/// as Django's `login()` rotates its token.
///
/// # Errors
///
/// [`SessionError::Deleted`] after [`delete()`](crate::Session::delete).
///
/// ```
/// async fn login(session: carafe::Session) -> Result<&'static str, carafe::SessionError> {
///     session.cycle_id();
///     carafe::csrf::rotate(&session)?;
///     Ok("logged in")
/// }
/// ```
pub fn rotate(session: &Session) -> Result<(), SessionError> {
    store(session, &Secret::generate())
}

/// A CSRF token for the page being answered: an axum extractor (it needs
/// the [`SessionLayer`](crate::SessionLayer)). Each extraction masks the
/// session's secret afresh; the secret is made and saved on first use.
///
/// ```
/// use carafe::csrf::CsrfToken;
///
/// async fn form(token: CsrfToken) -> String {
///     format!(r#"<form method="post">{}</form>"#, token.hidden_input())
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(form));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

impl CsrfToken {
    /// A token for `session`, creating its secret if it has none.
    ///
    /// # Errors
    ///
    /// [`SessionError::Deleted`] after [`delete()`](crate::Session::delete):
    /// a deleted session keeps no secret.
    ///
    /// ```
    /// async fn handler(session: carafe::Session) -> Result<String, carafe::SessionError> {
    ///     Ok(carafe::csrf::CsrfToken::for_session(&session)?.as_str().to_owned())
    /// }
    /// ```
    pub fn for_session(session: &Session) -> Result<Self, SessionError> {
        let secret = match secret(session) {
            Some(secret) => secret,
            None => {
                let secret = Secret::generate();
                store(session, &secret)?;
                secret
            }
        };
        Ok(CsrfToken(secret.mask()))
    }

    /// The token, URL- and HTML-safe (base64url).
    ///
    /// ```
    /// # async fn handler(token: carafe::csrf::CsrfToken) {
    /// let header = (carafe::csrf::HEADER, token.as_str().to_owned());
    /// # }
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A hidden form input carrying the token:
    /// `<input type="hidden" name="csrf_token" value="…">`.
    ///
    /// ```
    /// # async fn handler(token: carafe::csrf::CsrfToken) {
    /// assert!(token.hidden_input().starts_with(r#"<input type="hidden" name="csrf_token""#));
    /// # }
    /// ```
    #[must_use]
    pub fn hidden_input(&self) -> String {
        // base64url needs no HTML escaping.
        format!(r#"<input type="hidden" name="{FIELD}" value="{}">"#, self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        CsrfToken::for_session(&session).map_err(IntoResponse::into_response)
    }
}
