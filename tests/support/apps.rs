//! The application the SQL store tests serve over a real socket: a counter,
//! one key per `/set/{i}`, the key count, and login, whoami and logout as in
//! the quickstart, all with the untyped session and explicit saves.

use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use axum::extract::{Form, Path};
use axum::routing::{get, post};
use axum::Router;
use carafe::{Session, SessionLayer, SessionStore};
use http::StatusCode;

use super::client::{cookie_of, http};
use super::SECRET;

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

/// The routes behind a layer on `store` (`secure(false)`, a 3 s store timeout).
pub fn app(store: impl SessionStore) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .secure(false)
        .store_timeout(StdDuration::from_secs(3))
        .build()
        .expect("layer");
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/",
            get(|session: Session| async move {
                let n = session.get::<u32>("count").ok().flatten().unwrap_or(0) + 1;
                session.insert("count", n).expect("insert");
                session.save();
                format!("count: {n}")
            }),
        )
        .route(
            "/set/{i}",
            get(|session: Session, Path(i): Path<u32>| async move {
                session.insert(format!("k{i}"), i).expect("insert");
                session.save();
                "set"
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move { session.len().to_string() }),
        )
        .route(
            "/login",
            post(|session: Session, Form(login): Form<Login>| async move {
                session.insert("user", &login.user).expect("insert");
                session.cycle_id();
                session.save();
                format!("logged in as {}", login.user)
            }),
        )
        .route(
            "/whoami",
            get(|session: Session| async move {
                session
                    .get::<String>("user")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.delete();
                "logged out"
            }),
        )
        .layer(layer)
}

/// Against [`app`] served at `addr`: 50 overlapping requests on one
/// session, each setting its own key, leave all 50 keys (and the count).
pub async fn fifty_overlapping_requests(addr: SocketAddr) {
    let first = http(addr, "GET", "/", None, None).await;
    assert_eq!(first.body, "count: 1");
    let cookie = cookie_of(&first);
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let cookie = cookie.clone();
            tokio::spawn(async move { http(addr, "GET", &format!("/set/{i}"), Some(&cookie), None).await })
        })
        .collect();
    for request in requests {
        let reply = request.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let keys = http(addr, "GET", "/keys", Some(&cookie), None).await;
    assert_eq!(keys.body, "51");
}

/// Against [`app`] served twice on one store, at `a` and `b`: a login on one
/// is seen on the other, both count in one session, and a logout on one is
/// seen on the other at once, with the old cookie.
pub async fn one_session_on_two_instances(a: SocketAddr, b: SocketAddr) {
    let login = http(a, "POST", "/login", None, Some("user=alice")).await;
    assert_eq!(login.body, "logged in as alice");
    let cookie = cookie_of(&login);
    assert_eq!(http(b, "GET", "/whoami", Some(&cookie), None).await.body, "alice");
    let count = http(b, "GET", "/", Some(&cookie), None).await;
    assert_eq!(count.body, "count: 1");
    assert_eq!(http(a, "GET", "/", Some(&cookie), None).await.body, "count: 2");

    let logout = http(a, "POST", "/logout", Some(&cookie), None).await;
    assert_eq!(logout.body, "logged out");
    assert!(logout.expires_cookie());
    assert_eq!(
        http(b, "GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous"
    );
}
