//! Helpers shared by the integration tests, by concept:
//!
//! * here: the test secret, [`Reply`] and requests through `oneshot`
//!   ([`send`], [`req`]);
//! * [`client`]: a tiny HTTP/1.1 client for tests over a real socket
//!   ([`http`], a cookie-jar [`client::Client`]) and [`serve`];
//! * [`probe`]: [`Probe`], a store that counts calls or fails on demand;
//! * [`servers`]: where the Redis and PostgreSQL test servers are, and the
//!   `skipped: no Redis at URL` rule when they are not;
//! * [`proxy`]: a TCP proxy that counts the bytes a store sends;
//! * [`records`]: store keys, changes and 20-key sessions for store tests;
//! * [`browser`]: headless Chromium through chromedriver, for the browser tests;
//! * [`apps`]: the HTTP application the SQL store tests serve;
//! * [`stores`]: every server-side store, for tests that run on each.
//!
//! The items that were here before the split are re-exported, so
//! `use support::*` keeps working; the store-test helpers are reached by
//! their module path.
#![allow(dead_code)]

pub mod apps;
pub mod browser;
pub mod client;
pub mod probe;
pub mod proxy;
pub mod records;
pub mod servers;
pub mod stores;

use axum::body::Body;
use axum::Router;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use client::{http, serve};
#[allow(unused_imports)]
pub use probe::Probe;
#[allow(unused_imports)]
pub use records::now;

pub const SECRET: &[u8] = b"test secret: thirty-two bytes or more, certainly";

/// The name of the session cookie (the layer's default).
pub const COOKIE: &str = "__Host-carafe.sid";

/// The session cookie's name when it is not `Secure` (the layer's default
/// then, since `__Host-` needs `Secure`).
#[allow(dead_code)]
pub const PLAIN_COOKIE: &str = "carafe.sid";

/// Whether `name` is one of the session cookie's default names.
pub fn is_session_cookie(name: &str) -> bool {
    name == COOKIE || name == PLAIN_COOKIE
}

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

    /// Whether the reply tells the browser to drop its cookie (`Max-Age=0`
    /// or an expiry in 1970, in any case).
    pub fn expires_cookie(&self) -> bool {
        self.set_cookies.iter().any(|c| {
            let lower = c.to_ascii_lowercase();
            lower.contains("max-age=0") || lower.contains("expires=thu, 01 jan 1970")
        })
    }

    /// The session cookie ([`COOKIE`]) this reply sets: `Some(Some(pair))`
    /// for a live cookie, `Some(None)` for an expiring one, `None` if unset.
    pub fn session_cookie(&self) -> Option<Option<String>> {
        let header = self.session_set_cookie()?;
        let pair = header.split(';').next().unwrap_or_default().trim();
        // The attributes only: the value is hex and base64, and may well
        // contain "1970" (one cookie in about two thousand does).
        let attributes = header
            .split_once(';')
            .map_or("", |(_, attributes)| attributes)
            .to_ascii_lowercase();
        let expiring = pair.ends_with('=') || attributes.contains("max-age=0") || attributes.contains("1970");
        Some((!expiring).then(|| pair.to_owned()))
    }

    /// The expiring session cookie this reply sets, if any.
    pub fn expiring_cookie(&self) -> Option<&str> {
        match self.session_cookie() {
            Some(None) => self.session_set_cookie(),
            _ => None,
        }
    }

    fn session_set_cookie(&self) -> Option<&str> {
        self.set_cookies
            .iter()
            .map(String::as_str)
            .find(|c| c.split('=').next().map(str::trim).is_some_and(is_session_cookie))
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
