//! The tower layer and service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use time::OffsetDateTime;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Clock;
use crate::config::{Config, SessionLayerBuilder};
use crate::error::StoreError;
use crate::key::Keys;
use crate::record::Record;
use crate::state::{ClientCodec, CookieAction, Inner};
use crate::store::SessionStore;

/// What every request's session shares: configuration, keys, store, clock.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) keys: Keys,
    pub(crate) store: Arc<dyn SessionStore>,
    /// Set for client-side (cookie) sessions: the cookie is the store.
    pub(crate) client: Option<Arc<dyn ClientCodec>>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Shared {
    /// Runs one store call under the store timeout.
    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.config.store_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit)))
    }

    pub(crate) fn is_expired(&self, record: &Record, now: OffsetDateTime) -> bool {
        let config = &self.config;
        record.expires <= now
            || record.accessed.saturating_add(config.idle_timeout) <= now
            || config
                .absolute_lifetime
                .is_some_and(|life| record.created.saturating_add(life) <= now)
    }
}

/// Where sessions live: any [`SessionStore`], or (with the `cookie-store`
/// feature) the client-side `CookieStore`. Sealed: implement
/// [`SessionStore`] instead.
pub trait IntoBackend: sealed::Sealed {
    #[doc(hidden)]
    fn into_backend(self) -> Backend;
}

/// What [`IntoBackend`] gives the layer. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Backend {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) client: Option<Arc<dyn ClientCodec>>,
}

impl<S: SessionStore> IntoBackend for S {
    fn into_backend(self) -> Backend {
        Backend {
            store: Arc::new(self),
            client: None,
        }
    }
}

impl<S: SessionStore> sealed::Sealed for S {}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// The session middleware: one per application.
///
/// For each request it puts a session handle in the request's extensions,
/// where the [`Session`](struct@crate::Session) and [`Typed`](crate::Typed)
/// extractors find it. Nothing is read from the cookie or the store until a
/// handler extracts the session; a request that never does costs one small
/// allocation and sets no cookie.
///
/// After the handler has returned, the layer writes what is due (see the
/// crate documentation for the rules) and adds the cookie to the response.
/// Because it writes after the handler, Beaker's "save before
/// start_response" trap cannot happen here.
///
/// ```
/// use axum::{routing::get, Router};
/// use carafe::{MemoryStore, Session, SessionLayer};
///
/// async fn index(session: Session) -> String {
///     let count = session.get::<u32>("count").unwrap_or_default().unwrap_or(0) + 1;
///     session.insert("count", count).ok();
///     format!("count: {count}")
/// }
///
/// let layer = SessionLayer::builder(MemoryStore::new())
///     .secret(b"0123456789abcdef0123456789abcdef")
///     .auto(true)
///     .build()?;
/// let app: Router = Router::new().route("/", get(index)).layer(layer);
/// # Ok::<(), carafe::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// Starts configuring a layer over `store`.
    ///
    /// ```
    /// let builder = carafe::SessionLayer::builder(carafe::MemoryStore::new());
    /// ```
    pub fn builder(store: impl IntoBackend) -> SessionLayerBuilder {
        SessionLayerBuilder::new(store.into_backend())
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        SessionLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`SessionLayer`] wraps around an application.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The request extension the extractors look for.
#[derive(Clone)]
pub(crate) struct Handle(pub(crate) Arc<Inner>);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let cookies: Vec<HeaderValue> = req.headers().get_all(COOKIE).iter().cloned().collect();
        let inner = Arc::new(Inner::new(Arc::clone(&self.shared), cookies));
        req.extensions_mut().insert(Handle(Arc::clone(&inner)));
        ResponseFuture {
            state: FutureState::Handler {
                future: self.inner.call(req),
                inner: Some(inner),
            },
        }
    }
}

type Finish = Pin<Box<dyn Future<Output = Result<Option<CookieAction>, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: FutureState<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum FutureState<F, B> {
        Handler {
            #[pin]
            future: F,
            inner: Option<Arc<Inner>>,
        },
        Finishing {
            finish: Finish,
            response: Option<Response<B>>,
            inner: Arc<Inner>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Handler { future, inner } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        other => return other,
                    };
                    let Some(inner) = inner.take().filter(|inner| inner.is_loaded()) else {
                        // The session was never touched: nothing to do.
                        return Poll::Ready(Ok(response));
                    };
                    let failed = response.status().is_server_error();
                    let task = Arc::clone(&inner);
                    this.state.set(FutureState::Finishing {
                        finish: Box::pin(async move { task.finish(failed).await }),
                        response: Some(response),
                        inner,
                    });
                }
                StateProj::Finishing {
                    finish,
                    response,
                    inner,
                } => {
                    let result = std::task::ready!(finish.as_mut().poll(cx));
                    let Some(mut response) = response.take() else {
                        unreachable!("polled after completion");
                    };
                    match result {
                        Ok(action) => apply_cookie(response.headers_mut(), action),
                        Err(err) => {
                            let store = inner.shared.store.name();
                            let session = inner.lock().id.to_string();
                            tracing::error!(store, session, error = %err, "session store failed while saving; answering 500");
                            response = store_failure();
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// The response for a request whose session could not be saved or loaded.
pub(crate) fn store_failure<B: From<&'static str>>() -> Response<B> {
    let mut response = Response::new(B::from("session store unavailable\n"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn apply_cookie(headers: &mut HeaderMap, action: Option<CookieAction>) {
    let cookie = match action {
        Some(CookieAction::Set(cookie) | CookieAction::Remove(cookie)) => cookie,
        None => return,
    };
    let Ok(value) = HeaderValue::try_from(cookie.to_string()) else {
        tracing::error!("session cookie is not a valid header value; not sent");
        return;
    };
    headers.append(SET_COOKIE, value);
    let varies = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("cookie") || v.trim() == "*");
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache=\"Set-Cookie\""));
    }
}
