//! The tower middleware: [`SessionLayer`], its [`SessionService`] and the
//! service's [`ResponseFuture`].

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::COOKIE;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::IntoBackend;
use crate::builder::SessionLayerBuilder;
use crate::error::StoreError;
use crate::request::plan::Outcome;
use crate::request::{Handle, Inner, Shared};
use crate::wire::{self, CookieAction};

/// The session middleware: one per application.
///
/// For each request it puts a session handle in the request's extensions,
/// where the [`Session`](struct@crate::Session) and [`Typed`](crate::Typed)
/// extractors find it. Nothing is read from the cookie or the store until a
/// handler extracts the session. A request that never does still pays for
/// the handle (one `Arc` allocation), a copy of its `Cookie` header values
/// (a `Vec`, allocated only when the request has cookies) and the handle's
/// entry in the request's extensions (which allocates the extensions map if
/// the request had none); it sets no cookie.
///
/// After the handler has returned, the layer writes what is due (see the
/// crate documentation for the rules) and adds the cookie to the response.
/// Because it writes after the handler, Beaker's "save before
/// start_response" trap cannot happen here. If the handler panics, the
/// deletions it asked for are carried out before the panic goes on to
/// whatever catches it.
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
        SessionLayerBuilder::new(store)
    }

    /// The session cookie's name, as [`build`](SessionLayerBuilder::build)
    /// settled it: the one given, or the default for the cookie's
    /// attributes (`__Host-carafe.sid`, or `carafe.sid` when the `__Host-`
    /// prefix's rules do not hold).
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).build()?;
    /// assert_eq!(layer.cookie_name(), "__Host-carafe.sid");
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).secure(false).build()?;
    /// assert_eq!(layer.cookie_name(), "carafe.sid");
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.shared.config.cookie_name
    }

    /// The live sessions of `owner` (see
    /// [`Session::set_owner`](crate::Session::set_owner)), most recently
    /// accessed first, none marked current: for an admin tool or a job that
    /// has no request. Expired sessions are never listed.
    ///
    /// # Errors
    ///
    /// When the store fails; [`StoreError::Unsupported`] from the cookie
    /// store or a custom store that cannot list by owner.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build()?;
    /// assert!(layer.owner_sessions("user-42").await?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn owner_sessions(&self, owner: &str) -> Result<Vec<crate::OwnedSession>, StoreError> {
        crate::owner::list(&self.shared, owner, &[]).await
    }

    /// Revokes the session of `owner` that `handle` names; `Ok(false)` for
    /// a handle that names none of `owner`'s live sessions.
    ///
    /// # Errors
    ///
    /// As [`owner_sessions`](Self::owner_sessions).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build()?;
    /// assert!(!layer.revoke_owner_session("user-42", "no-such-handle").await?);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn revoke_owner_session(&self, owner: &str, handle: &str) -> Result<bool, StoreError> {
        match crate::owner::find(&self.shared, owner, handle).await? {
            Some(key) => crate::owner::delete(&self.shared, &key).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Revokes every live session of `owner` (an account locked or deleted
    /// by an administrator) and answers how many.
    ///
    /// # Errors
    ///
    /// As [`owner_sessions`](Self::owner_sessions); sessions revoked before
    /// a store failure stay revoked.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = carafe::SessionLayer::builder(carafe::MemoryStore::new()).secret([7u8; 32]).build()?;
    /// assert_eq!(layer.revoke_owner("user-42").await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn revoke_owner(&self, owner: &str) -> Result<u64, StoreError> {
        crate::owner::revoke_all(&self.shared, owner, &[]).await
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
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

type Finish = Pin<Box<dyn Future<Output = Result<CookieAction, StoreError>> + Send>>;

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
        Unwinding {
            finish: Finish,
            panic: Option<Box<dyn Any + Send>>,
        },
    }
}

impl<F, B: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn finish(inner: &Arc<Inner>, outcome: Outcome) -> Finish {
    let task = Arc::clone(inner);
    Box::pin(async move { task.finish(outcome).await })
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
                    // The future is never polled again after a panic.
                    let polled = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
                    let response = match polled {
                        Ok(Poll::Ready(Ok(response))) => response,
                        Ok(other) => return other,
                        Err(panic) => match inner.take().filter(|inner| inner.is_loaded()) {
                            Some(inner) => {
                                let finish = finish(&inner, Outcome::Panicked);
                                this.state.set(FutureState::Unwinding {
                                    finish,
                                    panic: Some(panic),
                                });
                                continue;
                            }
                            None => resume_unwind(panic),
                        },
                    };
                    let Some(inner) = inner.take().filter(|inner| inner.is_loaded()) else {
                        // The session was never touched: nothing to do.
                        return Poll::Ready(Ok(response));
                    };
                    let outcome = if response.status().is_server_error() {
                        Outcome::Failed
                    } else {
                        Outcome::Answered
                    };
                    this.state.set(FutureState::Finishing {
                        finish: finish(&inner, outcome),
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
                        Ok(action) => {
                            let shared = &inner.shared;
                            wire::finish_headers(
                                response.headers_mut(),
                                &shared.config,
                                action,
                                shared.now(),
                            );
                        }
                        Err(err) => {
                            let store = inner.shared.backend.name();
                            let session = inner.lock().id.to_string();
                            tracing::error!(store, session, error = %err, "session store failed while saving; answering 500");
                            response = wire::save_failure(&err);
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Unwinding { finish, panic } => {
                    if let Err(err) = std::task::ready!(finish.as_mut().poll(cx)) {
                        tracing::error!(error = %err, "session store failed while deleting after a panic");
                    }
                    match panic.take() {
                        Some(panic) => resume_unwind(panic),
                        None => unreachable!("polled after completion"),
                    }
                }
            }
        }
    }
}
