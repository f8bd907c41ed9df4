//! Helpers shared by the integration tests: requests through `oneshot`, a
//! cookie jar, a store that counts calls or fails on demand, and a tiny
//! HTTP/1.1 client for tests over a real socket.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use carafe::{Change, Record, SaveOutcome, SessionStore, StoreError, StoreKey};
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tower::ServiceExt;

pub const SECRET: &[u8] = b"test secret: thirty-two bytes or more, certainly";

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub set_cookies: Vec<String>,
    pub headers: http::HeaderMap,
}

impl Reply {
    /// The `name=value` pair of the first Set-Cookie, if any.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookies
            .first()
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
    }

    /// The value of the first Set-Cookie.
    pub fn cookie_value(&self) -> Option<String> {
        self.cookie()
            .map(|c| c.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default())
    }

    pub fn removes_cookie(&self) -> bool {
        self.set_cookies.iter().any(|c| c.contains("Max-Age=0"))
    }
}

pub async fn reply(response: Response<Body>) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let set_cookies = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        set_cookies,
        headers,
    }
}

/// Sends one request through the router.
pub async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>, body: Option<&str>) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    let body = match body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(b.to_owned())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(builder.body(body).unwrap()).await.unwrap();
    reply(response).await
}

pub async fn req(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    send(app, "GET", path, cookie, None).await
}

/// A store wrapper that counts calls and can be told to fail.
#[derive(Debug, Clone)]
pub struct Probe<S> {
    pub inner: S,
    pub loads: Arc<AtomicUsize>,
    pub saves: Arc<AtomicUsize>,
    pub deletes: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
    pub last_change: Arc<std::sync::Mutex<Option<Change>>>,
}

impl<S: SessionStore> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            loads: Arc::default(),
            saves: Arc::default(),
            deletes: Arc::default(),
            failing: Arc::default(),
            last_change: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
            + self.saves.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
    }

    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    pub fn last_change(&self) -> Option<Change> {
        self.last_change.lock().unwrap().clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::backend(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "probe: store down",
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore> SessionStore for Probe<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.load(key).await
    }
    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        *self.last_change.lock().unwrap() = Some(change.clone());
        self.inner.save(key, change).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.delete(key).await
    }
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_expired(now).await
    }
    fn name(&self) -> &'static str {
        "probe"
    }
}

/// A minimal HTTP/1.1 client over a real socket (`Connection: close`).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete HTTP response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let body = if headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let set_cookies = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    Reply {
        status: StatusCode::from_u16(code).unwrap(),
        body,
        set_cookies,
        headers,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Serves `app` on a free loopback port.
pub async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}
