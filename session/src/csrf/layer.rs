//! The CSRF middleware: [`CsrfLayer`], [`CsrfService`] and [`CsrfFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::csrf::origin::{judge, Verdict};
use crate::csrf::{accepts, CsrfError, FIELD, HEADER};
use crate::session::Session;

/// The default [`CsrfLayer::form_limit`]: 2 MiB, axum's default body limit.
const FORM_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Settings {
    trusted: Vec<String>,
    form_limit: usize,
}

/// Refuses unsafe requests that do not prove they come from the
/// application's own pages (see [the module](crate::csrf)). Goes inside the
/// [`SessionLayer`](crate::SessionLayer): `.layer(CsrfLayer::new())` before
/// `.layer(session_layer)`.
///
/// ```
/// use carafe::csrf::CsrfLayer;
/// let csrf = CsrfLayer::new()
///     .trusted_origin("https://pay.example")
///     .form_limit(64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CsrfLayer {
    settings: Arc<Settings>,
}

impl Default for CsrfLayer {
    fn default() -> Self {
        CsrfLayer::new()
    }
}

impl CsrfLayer {
    /// The layer: requests must come from the request's own host.
    ///
    /// ```
    /// let csrf = carafe::csrf::CsrfLayer::new();
    /// ```
    pub fn new() -> Self {
        CsrfLayer {
            settings: Arc::new(Settings {
                trusted: Vec::new(),
                form_limit: FORM_LIMIT,
            }),
        }
    }

    /// Also accepts unsafe requests from `origin` (`scheme://host[:port]`,
    /// as browsers send it in `Origin`; Django's `CSRF_TRUSTED_ORIGINS`).
    /// They still need a valid token.
    ///
    /// ```
    /// let csrf = carafe::csrf::CsrfLayer::new().trusted_origin("https://shop.example");
    /// ```
    pub fn trusted_origin(mut self, origin: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.settings).trusted.push(origin.into());
        self
    }

    /// The largest form body read to find the `csrf_token` field (default
    /// 2 MiB); a larger one answers `413`.
    ///
    /// ```
    /// let csrf = carafe::csrf::CsrfLayer::new().form_limit(64 * 1024);
    /// ```
    pub fn form_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).form_limit = bytes;
        self
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> CsrfService<S> {
        CsrfService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`CsrfLayer`] makes.
#[derive(Debug, Clone)]
pub struct CsrfService<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// The response future of [`CsrfService`].
pub struct CsrfFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> std::fmt::Debug for CsrfFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfFuture").finish_non_exhaustive()
    }
}

impl<E> Future for CsrfFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S> Service<Request<Body>> for CsrfService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CsrfFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one that serves the request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        CsrfFuture {
            inner: Box::pin(async move {
                match check(request, &settings).await {
                    Ok(request) => inner.call(request).await,
                    Err(refusal) => Ok(refusal),
                }
            }),
        }
    }
}

/// The request, passed on (its body restored if it was read), or the
/// response refusing it.
async fn check(request: Request<Body>, settings: &Settings) -> Result<Request<Body>, Response> {
    let verdict = judge(
        request.method(),
        request.uri(),
        request.headers(),
        &settings.trusted,
    );
    match verdict {
        Verdict::Safe => return Ok(request),
        Verdict::Refuse(err) => return Err(err.into_response()),
        Verdict::NeedsToken => {}
    }
    let session = Session::from_extensions(request.extensions())
        .await
        .map_err(IntoResponse::into_response)?;
    if let Some(token) = request.headers().get(HEADER) {
        let valid = token.to_str().is_ok_and(|token| accepts(&session, token));
        return if valid {
            Ok(request)
        } else {
            Err(CsrfError::Invalid.into_response())
        };
    }
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(CsrfError::Missing.into_response());
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, settings.form_limit).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            let err = if too_large {
                CsrfError::TooLarge
            } else {
                CsrfError::Body
            };
            return Err(err.into_response());
        }
    };
    let token = form_urlencoded::parse(&bytes).find_map(|(name, value)| (name == FIELD).then_some(value));
    match token {
        None => Err(CsrfError::Missing.into_response()),
        Some(token) if accepts(&session, &token) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Some(_) => Err(CsrfError::Invalid.into_response()),
    }
}
