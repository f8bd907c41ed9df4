//! Per-request cost of the session layer.
//!
//! * `untouched`: a route that never extracts the session, with and without
//!   the layer: the layer's overhead when the session is not used.
//! * `typed_vs_untyped`: load + modify one field + save of a 10-field
//!   session, through a `#[derive(Session)]` struct and through the untyped
//!   API (10 `get`s and one `insert`), on the memory store.
//!
//! `cargo bench -p carafe-tests --bench session`

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use carafe::{MemoryStore, Session, SessionLayer, Typed};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;

#[derive(carafe::Session, Default)]
#[session(auto, default)]
struct Ten {
    f0: u64,
    f1: u64,
    f2: String,
    f3: String,
    f4: Vec<u32>,
    f5: Option<String>,
    f6: bool,
    f7: u64,
    f8: String,
    f9: Vec<String>,
}

const KEYS: [&str; 10] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"];

async fn typed(mut t: Typed<Ten>) -> String {
    t.f0 += 1;
    t.f0.to_string()
}

async fn untyped(s: Session) -> String {
    let mut f0 = 0u64;
    for key in KEYS {
        let v: Option<serde_json::Value> = s.get(key).unwrap_or_default();
        if key == "f0" {
            f0 = v.and_then(|v| v.as_u64()).unwrap_or(0);
        }
    }
    s.insert("f0", f0 + 1).ok();
    (f0 + 1).to_string()
}

async fn seed(s: Session) -> &'static str {
    s.insert("f0", 0u64).ok();
    s.insert("f1", 1u64).ok();
    s.insert("f2", "two").ok();
    s.insert("f3", "three").ok();
    s.insert("f4", vec![1u32, 2, 3]).ok();
    s.insert("f5", Some("five")).ok();
    s.insert("f6", true).ok();
    s.insert("f7", 7u64).ok();
    s.insert("f8", "eight").ok();
    s.insert("f9", vec!["nine".to_string()]).ok();
    "seeded"
}

fn app() -> Router {
    let layer = SessionLayer::builder(MemoryStore::new())
        .secret(b"bench secret, at least thirty-two bytes long")
        .auto(true)
        .build()
        .expect("valid config");
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/typed", get(typed))
        .route("/untyped", get(untyped))
        .route("/seed", get(seed))
        .layer(layer)
}

fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().uri(path);
    if let Some(c) = cookie {
        b = b.header(http::header::COOKIE, c);
    }
    b.body(Body::empty()).expect("request")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = app();
    let bare: Router = Router::new().route("/health", get(|| async { "ok" }));
    let cookie = rt.block_on(async {
        let res = app.clone().oneshot(request("/seed", None)).await.expect("seed");
        let set = res.headers()[http::header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .to_owned();
        set.split(';').next().expect("pair").to_owned()
    });

    let mut g = c.benchmark_group("untouched");
    g.bench_function("without_layer", |b| {
        b.to_async(&rt)
            .iter(|| bare.clone().oneshot(request("/health", Some(&cookie))))
    });
    g.bench_function("with_layer", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/health", Some(&cookie))))
    });
    g.finish();

    let mut g = c.benchmark_group("typed_vs_untyped");
    g.bench_function("typed", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/typed", Some(&cookie))))
    });
    g.bench_function("untyped", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/untyped", Some(&cookie))))
    });
    g.finish();
}

criterion_group!(session, benches);
criterion_main!(session);
