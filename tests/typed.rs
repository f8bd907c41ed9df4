//! Typed sessions (`#[derive(Session)]` + `Typed<T>`) through the layer.

mod support;

#[allow(dead_code)]
#[path = "../examples/cart.rs"]
mod cart;

use axum::routing::get;
use axum::Router;
use carafe::{MemoryStore, MockClock, Session, SessionLayer, Typed};
use serde::{Deserialize, Serialize};
use support::*;

#[derive(carafe::Session, Default, Debug)]
#[session(auto, default, namespace = "visit")]
struct Visit {
    count: u32,
    #[session(rename = "uid")]
    user_id: Option<u64>,
    #[session(skip)]
    scratch: Vec<u8>,
}

#[derive(carafe::Session, Debug)]
struct Manual {
    #[session(default)]
    n: u32,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Profile {
    name: String,
}

#[derive(carafe::Session, Debug)]
#[session(namespace = "strict")]
struct Strict {
    profile: Profile,
}

fn default_level() -> u8 {
    7
}

#[derive(carafe::Session, Debug)]
#[session(auto, namespace = "evolve")]
struct Evolving {
    #[session(default = "default_level")]
    level: u8,
    #[session(default)]
    tags: Vec<String>,
}

fn app(store: impl carafe::SessionStore) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .clock(MockClock::default())
        .build()
        .unwrap();
    Router::new()
        .route(
            "/visit",
            get(|mut v: Typed<Visit>| async move {
                v.count += 1;
                v.scratch.push(1);
                format!("count: {}", v.count)
            }),
        )
        .route(
            "/peek",
            get(|v: Typed<Visit>| async move { format!("{} {:?}", v.count, v.user_id) }),
        )
        .route(
            "/touch-mut",
            get(|mut v: Typed<Visit>| async move {
                // a &mut access that changes nothing
                let c = v.count + 1;
                v.count = c - 1;
                "same"
            }),
        )
        .route(
            "/raw",
            get(|s: Session| async move {
                format!(
                    "{:?} {:?} {:?}",
                    s.get::<u32>("visit.count").unwrap(),
                    s.get_value("visit.uid"),
                    s.keys()
                )
            }),
        )
        .route(
            "/set-uid",
            get(|mut v: Typed<Visit>| async move {
                v.user_id = Some(42);
                "uid"
            }),
        )
        .route(
            "/manual",
            get(|mut m: Typed<Manual>| async move {
                m.n += 1;
                m.n.to_string()
            }),
        )
        .route(
            "/manual-save",
            get(|mut m: Typed<Manual>| async move {
                m.n += 1;
                m.save();
                m.n.to_string()
            }),
        )
        .route(
            "/manual-persist",
            get(|mut m: Typed<Manual>| async move {
                m.n += 1;
                m.persist().await.unwrap();
                m.n.to_string()
            }),
        )
        .route(
            "/strict",
            get(|s: Typed<Strict>| async move { s.profile.name.clone() }),
        )
        .route(
            "/put-raw/{key}/{json}",
            get(
                |axum::extract::Path((k, j)): axum::extract::Path<(String, String)>, s: Session| async move {
                    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
                    s.insert(k, &v).unwrap();
                    s.save();
                    "put"
                },
            ),
        )
        .route(
            "/evolve",
            get(|e: Typed<Evolving>| async move { format!("{} {:?}", e.level, e.tags) }),
        )
        .route(
            "/two",
            get(
                |mut v: Typed<Visit>, mut m: Typed<Manual>, s: Session| async move {
                    v.count += 1;
                    m.n += 10;
                    m.save();
                    format!("{} {} {}", v.count, m.n, s.id() == v.id())
                },
            ),
        )
        .route(
            "/logout",
            get(|mut v: Typed<Visit>| async move {
                v.count += 100;
                v.delete();
                "out"
            }),
        )
        .route(
            "/meta",
            get(|v: Typed<Visit>| async move {
                format!("{} {}", v.last_accessed().is_none(), v.created() <= v.accessed())
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn typed_fields_are_session_keys_and_auto_saves() {
    let store = Probe::new(MemoryStore::new());
    let app = app(store.clone());
    let r = req(&app, "/visit", None).await;
    assert_eq!(r.body, "count: 1");
    let cookie = r.cookie().unwrap();
    assert_eq!(req(&app, "/visit", Some(&cookie)).await.body, "count: 2");
    // the untyped view sees the same keys; skip fields are not stored;
    // defaults that were never changed are not written
    assert_eq!(
        req(&app, "/raw", Some(&cookie)).await.body,
        "Some(2) None [\"visit.count\"]"
    );
    req(&app, "/set-uid", Some(&cookie)).await;
    assert_eq!(
        req(&app, "/raw", Some(&cookie)).await.body,
        "Some(2) Some(Number(42)) [\"visit.count\", \"visit.uid\"]"
    );
    assert_eq!(req(&app, "/peek", Some(&cookie)).await.body, "2 Some(42)");
}

#[tokio::test]
async fn only_changed_fields_are_written() {
    let store = Probe::new(MemoryStore::new());
    let app = app(store.clone());
    let cookie = req(&app, "/visit", None).await.cookie().unwrap();
    req(&app, "/set-uid", Some(&cookie)).await;
    let change = store.last_change().unwrap();
    assert_eq!(
        change.set.keys().collect::<Vec<_>>(),
        ["visit.uid"],
        "count did not change"
    );
    let saves = store.saves();
    req(&app, "/touch-mut", Some(&cookie)).await;
    req(&app, "/peek", Some(&cookie)).await;
    assert_eq!(
        store.saves(),
        saves,
        "a write that restores the value, and reads, write nothing"
    );
}

#[tokio::test]
async fn without_auto_the_user_saves() {
    let store = Probe::new(MemoryStore::new());
    let app = app(store.clone());
    let r = req(&app, "/manual", None).await;
    assert_eq!(r.body, "1");
    assert!(r.cookie().is_none(), "not auto, not saved: nothing stored");
    assert_eq!(store.saves(), 0);
    let cookie = req(&app, "/manual-save", None).await.cookie().unwrap();
    assert_eq!(req(&app, "/manual", Some(&cookie)).await.body, "2");
    assert_eq!(
        req(&app, "/manual", Some(&cookie)).await.body,
        "2",
        "unsaved change was not kept"
    );
    assert_eq!(req(&app, "/manual-persist", Some(&cookie)).await.body, "2");
    assert_eq!(req(&app, "/manual-save", Some(&cookie)).await.body, "3");
}

#[tokio::test]
async fn required_field_missing_or_invalid_is_a_clear_500() {
    let app = app(MemoryStore::new());
    let r = req(&app, "/strict", None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "session data unusable\n");
    let cookie = req(&app, "/put-raw/strict.profile/{\"name\":\"ada\"}", None)
        .await
        .cookie()
        .unwrap();
    assert_eq!(req(&app, "/strict", Some(&cookie)).await.body, "ada");
    req(&app, "/put-raw/strict.profile/42", Some(&cookie)).await;
    assert_eq!(req(&app, "/strict", Some(&cookie)).await.status, 500);
}

#[tokio::test]
async fn schema_evolution_falls_back_to_defaults_per_field() {
    let app = app(MemoryStore::new());
    assert_eq!(req(&app, "/evolve", None).await.body, "7 []");
    let cookie = req(&app, "/put-raw/evolve.level/3", None).await.cookie().unwrap();
    req(&app, "/put-raw/evolve.tags/[\"a\"]", Some(&cookie)).await;
    assert_eq!(req(&app, "/evolve", Some(&cookie)).await.body, "3 [\"a\"]");
    // the type of `level` changed between deploys: only that field falls back
    req(&app, "/put-raw/evolve.level/\"high\"", Some(&cookie)).await;
    assert_eq!(req(&app, "/evolve", Some(&cookie)).await.body, "7 [\"a\"]");
    req(&app, "/put-raw/evolve.level/300", Some(&cookie)).await;
    assert_eq!(req(&app, "/evolve", Some(&cookie)).await.body, "7 [\"a\"]");
}

#[tokio::test]
async fn several_views_share_one_load_one_id_and_one_cookie() {
    let store = Probe::new(MemoryStore::new());
    let app = app(store.clone());
    let r = req(&app, "/two", None).await;
    assert_eq!(r.body, "1 10 true");
    assert_eq!(r.set_cookies.len(), 1);
    let cookie = r.cookie().unwrap();
    let loads = store.loads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(req(&app, "/two", Some(&cookie)).await.body, "2 20 true");
    assert_eq!(
        store.loads.load(std::sync::atomic::Ordering::SeqCst),
        loads + 1,
        "loaded once"
    );
}

#[tokio::test]
async fn delete_detaches_the_typed_view() {
    let store = MemoryStore::new();
    let app = app(store.clone());
    let cookie = req(&app, "/visit", None).await.cookie().unwrap();
    let r = req(&app, "/logout", Some(&cookie)).await;
    assert!(r.removes_cookie());
    assert!(
        store.is_empty(),
        "the deleted session is not re-created by the view's drop"
    );
}

#[tokio::test]
async fn timestamps_reach_the_typed_view() {
    let app = app(MemoryStore::new());
    assert_eq!(req(&app, "/meta", None).await.body, "true true");
}

#[tokio::test]
async fn cart_example_two_namespaces_and_untyped_fallback() {
    let layer = SessionLayer::builder(MemoryStore::new())
        .secret(SECRET)
        .build()
        .unwrap();
    let app = cart::app(layer);
    let cookie = send(&app, "POST", "/cart/tea", None, None)
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        send(&app, "POST", "/cart/milk", Some(&cookie), None).await.body,
        "2 items"
    );
    let r = send(&app, "POST", "/login", Some(&cookie), Some("user=ada")).await;
    let cookie = r.cookie().unwrap();
    send(&app, "POST", "/theme/dark", Some(&cookie), None).await;
    assert_eq!(
        req(&app, "/summary", Some(&cookie)).await.body,
        "user: ada, items: [\"tea\", \"milk\"], raw: [\"tea\", \"milk\"], theme: dark"
    );
}
