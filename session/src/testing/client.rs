//! [`TestClient`]: requests to a `Router` through `oneshot`, with a cookie
//! jar.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::Router;
use cookie::Cookie;
use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower_service::Service;

/// A client for an application's tests: sends requests to a `Router`
/// in-process and keeps the cookies responses set (removing those they
/// expire), as a browser would for one site.
///
/// ```
/// use axum::routing::get;
/// use carafe::testing::TestClient;
/// use carafe::{MemoryStore, Session, SessionLayer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let layer = SessionLayer::builder(MemoryStore::new()).secret([7u8; 32]).auto(true).build().unwrap();
/// let app = axum::Router::new()
///     .route("/", get(|s: Session| async move {
///         let n = s.get::<u32>("n").unwrap().unwrap_or(0) + 1;
///         s.insert("n", n).unwrap();
///         n.to_string()
///     }))
///     .layer(layer);
/// let mut client = TestClient::new(app);
/// assert_eq!(client.get("/").await.text(), "1");
/// assert_eq!(client.get("/").await.text(), "2");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TestClient {
    router: Router,
    jar: BTreeMap<String, String>,
}

/// A response as a test sees it: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as text (invalid UTF-8 replaced).
    ///
    /// ```
    /// let r = carafe::testing::TestResponse { status: http::StatusCode::OK, headers: Default::default(), body: b"hi".to_vec() };
    /// assert_eq!(r.text(), "hi");
    /// ```
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Set-Cookie` headers, as sent.
    ///
    /// ```
    /// let r = carafe::testing::TestResponse { status: http::StatusCode::OK, headers: Default::default(), body: Vec::new() };
    /// assert!(r.set_cookies().is_empty());
    /// ```
    #[must_use]
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    }
}

impl TestClient {
    /// A client with an empty cookie jar.
    ///
    /// ```
    /// let client = carafe::testing::TestClient::new(axum::Router::new());
    /// assert_eq!(client.cookie_header(), None);
    /// ```
    #[must_use]
    pub fn new(router: Router) -> Self {
        TestClient {
            router,
            jar: BTreeMap::new(),
        }
    }

    /// Puts the cookies of a `Cookie` header value (`a=1; b=2`, as
    /// [`create_session`](crate::SessionLayer::create_session) gives) into
    /// the jar.
    ///
    /// ```
    /// let client = carafe::testing::TestClient::new(axum::Router::new()).with_cookie("a=1; b=2");
    /// assert_eq!(client.cookie_header().as_deref(), Some("a=1; b=2"));
    /// ```
    #[must_use]
    pub fn with_cookie(mut self, header: &str) -> Self {
        for cookie in Cookie::split_parse(header.to_owned()).flatten() {
            self.jar
                .insert(cookie.name().to_owned(), cookie.value().to_owned());
        }
        self
    }

    /// The `Cookie` header the next request sends; `None` with an empty jar.
    ///
    /// ```
    /// let client = carafe::testing::TestClient::new(axum::Router::new());
    /// assert!(client.cookie_header().is_none());
    /// ```
    #[must_use]
    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Sends `GET path`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut client = carafe::testing::TestClient::new(axum::Router::new());
    /// assert_eq!(client.get("/nothing").await.status, http::StatusCode::NOT_FOUND);
    /// # });
    /// ```
    pub async fn get(&mut self, path: &str) -> TestResponse {
        self.request(Request::get(path).body(Body::empty()).expect("a valid path"))
            .await
    }

    /// Sends `POST path` with `form` as an `application/x-www-form-urlencoded`
    /// body.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut client = carafe::testing::TestClient::new(axum::Router::new());
    /// assert_eq!(client.post_form("/login", "user=ada").await.status, http::StatusCode::NOT_FOUND);
    /// # });
    /// ```
    pub async fn post_form(&mut self, path: &str, form: &str) -> TestResponse {
        let request = Request::post(path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("a valid path");
        self.request(request).await
    }

    /// Sends `request` with the jar's cookies (unless it has a `Cookie`
    /// header of its own) and keeps the cookies the response sets.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut client = carafe::testing::TestClient::new(axum::Router::new());
    /// let request = http::Request::delete("/cart").body(axum::body::Body::empty()).unwrap();
    /// assert_eq!(client.request(request).await.status, http::StatusCode::NOT_FOUND);
    /// # });
    /// ```
    pub async fn request(&mut self, mut request: Request<Body>) -> TestResponse {
        if !request.headers().contains_key(COOKIE) {
            if let Some(header) = self.cookie_header() {
                let value = header
                    .parse()
                    .expect("cookies the jar took are valid header text");
                request.headers_mut().insert(COOKIE, value);
            }
        }
        let mut router = self.router.clone();
        let ready = std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx)).await;
        if let Err(never) = ready {
            match never {}
        }
        let response = match router.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(err) => panic!("the response body failed: {err}"),
        };
        let response = TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        for set in response.set_cookies() {
            let Ok(cookie) = Cookie::parse(set.to_owned()) else {
                continue;
            };
            let expired = cookie
                .max_age()
                .is_some_and(|age| age.is_zero() || age.is_negative());
            if expired {
                self.jar.remove(cookie.name());
            } else {
                self.jar
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        response
    }
}
