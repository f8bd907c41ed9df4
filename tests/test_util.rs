//! The `test-util` helpers as an application's tests use them: a session
//! made without the login form, read back after a request, and a client that
//! keeps cookies like a browser. On the memory, file and cookie stores.

mod support;

use axum::routing::{get, post};
use axum::Router;
use carafe::store::Data;
use carafe::testing::TestClient;
use carafe::{CookieStore, FileStore, IntoBackend, MemoryStore, Session, SessionLayer, Typed};
use http::StatusCode;
use serde_json::json;
use support::SECRET;

#[derive(carafe::Session, Debug)]
#[session(auto, namespace = "auth")]
struct Auth {
    user: String,
    #[session(default)]
    hits: u32,
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|auth: Option<Typed<Auth>>| async move {
                auth.map_or_else(
                    || "anonymous".to_owned(),
                    |mut a| {
                        a.hits += 1;
                        format!("{} {}", a.user, a.hits)
                    },
                )
            }),
        )
        .route(
            "/login",
            post(|session: Session| async move {
                session.cycle_id();
                Typed::insert(
                    session,
                    Auth {
                        user: "ada".into(),
                        hits: 0,
                    },
                );
                "in"
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.delete();
                "out"
            }),
        )
        .layer(layer)
}

fn layers() -> Vec<(&'static str, SessionLayer, Option<tempfile::TempDir>)> {
    fn layer(store: impl IntoBackend) -> SessionLayer {
        SessionLayer::builder(store).secret(SECRET).build().unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    vec![
        ("memory", layer(MemoryStore::new()), None),
        ("file", layer(FileStore::new(dir.path()).unwrap()), Some(dir)),
        ("cookie", layer(CookieStore::new()), None),
    ]
}

#[tokio::test]
async fn a_made_session_is_what_the_handler_sees_and_its_changes_can_be_read() {
    for (store, layer, _dir) in layers() {
        let cookie = layer
            .create_typed(Auth {
                user: "grace".into(),
                hits: 41,
            })
            .await
            .unwrap();
        let mut client = TestClient::new(app(layer.clone())).with_cookie(&cookie);
        let r = client.get("/whoami").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), "grace 42", "{store}");
        // The next request's view of the session (the cookie store keeps it
        // in the cookie: the client's jar has the rewritten one).
        let now = client.cookie_header().unwrap();
        let data = layer.read_session(&now).await.unwrap().expect("live");
        assert_eq!(data["auth.hits"], json!(42), "{store}");
    }
}

#[tokio::test]
async fn untyped_data_and_forged_or_empty_cookies() {
    for (store, layer, _dir) in layers() {
        let mut data = Data::new();
        data.insert("auth.user".into(), json!("linus"));
        let cookie = layer.create_session(data).await.unwrap();
        assert!(cookie.starts_with("__Host-carafe.sid="), "{store}: {cookie}");
        let mut client = TestClient::new(app(layer.clone())).with_cookie(&cookie);
        assert_eq!(client.get("/whoami").await.text(), "linus 1", "{store}");

        for forged in [
            "__Host-carafe.sid=forged",
            "",
            "other=1",
            "__Host-carafe.sid=\u{e9}",
        ] {
            assert_eq!(
                layer.read_session(forged).await.unwrap(),
                None,
                "{store}: {forged:?}"
            );
        }
        // An empty session is not saved: no cookie to give.
        assert_eq!(layer.create_session(Data::new()).await.unwrap(), "", "{store}");
    }
}

#[tokio::test]
async fn the_client_keeps_cookies_like_a_browser() {
    for (store, layer, _dir) in layers() {
        let mut client = TestClient::new(app(layer.clone()));
        assert_eq!(client.get("/whoami").await.text(), "anonymous");
        assert_eq!(
            client.cookie_header(),
            None,
            "{store}: nothing saved, nothing kept"
        );
        assert_eq!(client.post_form("/login", "").await.text(), "in");
        let logged_in = client.cookie_header().expect("login sets the cookie");
        assert_eq!(client.get("/whoami").await.text(), "ada 1", "{store}");
        assert_eq!(client.post_form("/logout", "").await.text(), "out");
        assert_eq!(
            client.cookie_header(),
            None,
            "{store}: the removal cookie empties the jar"
        );
        assert_eq!(client.get("/whoami").await.text(), "anonymous");
        if store != "cookie" {
            // Server-side: the old cookie names nothing any more.
            assert_eq!(layer.read_session(&logged_in).await.unwrap(), None, "{store}");
        }
    }
}
