//! Typed views over data whose map keeps insertion order (serde_json's
//! `preserve_order`): every field is found whatever order the keys were
//! written in.

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use carafe::{MemoryStore, Session, SessionLayer, Typed};
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(carafe::Session, Debug)]
#[session(namespace = "visit")]
struct Visit {
    count: u32,
    uid: u64,
    zone: String,
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, cookie, String::from_utf8(body.to_vec()).unwrap())
}

#[test]
fn the_feature_is_on() {
    let mut map = serde_json::Map::new();
    map.insert("b".into(), 1.into());
    map.insert("a".into(), 2.into());
    assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "a"], "serde_json/preserve_order must be on");
}

#[tokio::test]
async fn typed_fields_are_found_in_any_key_order() {
    let layer = SessionLayer::builder(MemoryStore::new())
        .secret(b"preserve-order test secret, 32 bytes or more")
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/write",
            post(|session: Session| async move {
                // Reverse key order, and other keys in between.
                session.insert("zz", 1).unwrap();
                session.insert("visit.zone", "utc").unwrap();
                session.insert("m", 2).unwrap();
                session.insert("visit.uid", 7).unwrap();
                session.insert("visit.count", 3).unwrap();
                session.insert("a", 0).unwrap();
                session.save();
                "ok"
            }),
        )
        .route(
            "/read",
            get(|visit: Typed<Visit>, session: Session| async move {
                format!("{} {} {} | {}", visit.count, visit.uid, visit.zone, session.keys().join(","))
            }),
        )
        .route(
            "/bump",
            post(|mut visit: Typed<Visit>| async move {
                visit.count += 1;
                visit.save();
                "bumped"
            }),
        )
        .layer(layer);
    let (_, cookie, _) = call(&app, "POST", "/write", None).await;
    let cookie = cookie.expect("a session");
    let (status, _, body) = call(&app, "GET", "/read", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "3 7 utc | a,m,visit.count,visit.uid,visit.zone,zz", "keys() is sorted");
    call(&app, "POST", "/bump", Some(&cookie)).await;
    let (_, _, body) = call(&app, "GET", "/read", Some(&cookie)).await;
    assert!(body.starts_with("4 7 utc"), "{body}");
}
