//! The extractor for the untyped session, and its rejection.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Extensions, StatusCode};

use crate::error::{SessionError, StoreError, TypedError};
use crate::request::Handle;
use crate::session::Session;
use crate::wire::store_failure;

/// Why a session could not be extracted. Every variant answers 500 and is
/// logged with `tracing` when it is made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The route is not behind a [`SessionLayer`](crate::SessionLayer).
    #[error("no SessionLayer: add `.layer(session_layer)` to the router")]
    MissingLayer,
    /// The store failed while loading the session.
    #[error("session store {store:?} failed: {source}")]
    Store {
        /// The store's name.
        store: &'static str,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// A typed session could not be built from the data.
    #[error(transparent)]
    Typed(TypedError),
}

impl SessionRejection {
    pub(crate) fn from_typed(err: TypedError) -> Self {
        // The error's text names the struct, the key and the kind of
        // failure, never the stored value.
        tracing::error!(error = %err, "typed session could not be loaded; answering 500");
        SessionRejection::Typed(err)
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            SessionRejection::Store { .. } => store_failure(),
            SessionRejection::MissingLayer => {
                (StatusCode::INTERNAL_SERVER_ERROR, "session layer missing\n").into_response()
            }
            SessionRejection::Typed(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "session data unusable\n").into_response()
            }
        }
    }
}

/// A handler may return `Result<_, SessionError>`: an error answers 500
/// and is logged.
///
/// ```
/// async fn handler(session: carafe::Session) -> Result<String, carafe::SessionError> {
///     session.persist().await?;
///     Ok("saved".into())
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        // No variant's text quotes a session value.
        tracing::error!(error = %self, "session error; answering 500");
        match self {
            SessionError::Store(_) => store_failure(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "session error\n").into_response(),
        }
    }
}

impl Session {
    /// The session of a request, from its extensions (for tower middleware
    /// and services other than axum handlers), loaded from the store if this
    /// is the first use in the request.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::MissingLayer`] without a layer;
    /// [`SessionRejection::Store`] when the store fails.
    ///
    /// ```
    /// async fn in_middleware(req: &http::Request<()>) -> Option<carafe::Session> {
    ///     carafe::Session::from_extensions(req.extensions()).await.ok()
    /// }
    /// ```
    pub async fn from_extensions(extensions: &Extensions) -> Result<Session, SessionRejection> {
        let Some(Handle(inner)) = extensions.get::<Handle>().cloned() else {
            tracing::error!("Session extractor used on a route without SessionLayer");
            return Err(SessionRejection::MissingLayer);
        };
        match inner.load().await {
            Ok(()) => Ok(Session::new(inner)),
            Err(source) => {
                let store = inner.shared.backend.name();
                tracing::error!(store, error = %source, "session store failed while loading; answering 500");
                Err(SessionRejection::Store { store, source })
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Session::from_extensions(&parts.extensions).await
    }
}
