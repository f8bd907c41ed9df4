//! Flash messages (issue 11, item 2) over HTTP, on every store: set in one
//! request, shown exactly once after a redirect, in order, with levels and
//! typed bodies; overlapping requests neither duplicate nor lose one; bad
//! data is a clear answer that takes nothing.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use carafe::flash::{Flash, Level, Message};
use carafe::testing::TestClient;
use carafe::{CookieStore, MemoryStore, Session, SessionLayer, SessionStore};
use serde::{Deserialize, Serialize};
use support::{Probe, SECRET};
use tokio::sync::Barrier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    product: String,
    quantity: u32,
}

type Params = Query<HashMap<String, String>>;

fn level(name: &str) -> Level {
    match name {
        "success" => Level::Success,
        "warning" => Level::Warning,
        "error" => Level::Error,
        _ => Level::Info,
    }
}

fn render(messages: &[Message]) -> String {
    if messages.is_empty() {
        return "no messages".into();
    }
    messages
        .iter()
        .map(|m| format!("{}: {}", m.level, m.body))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn push(flash: Flash, Query(q): Params) -> Result<Redirect, carafe::SessionError> {
    flash.push(level(&q["level"]), &q["body"])?;
    Ok(Redirect::to("/"))
}

async fn show(flash: Flash) -> Result<String, carafe::SessionError> {
    Ok(render(&flash.take::<String>().await?))
}

/// Loads the session, waits until the other request has loaded it too,
/// then takes.
async fn wait_take(
    State(barrier): State<Arc<Barrier>>,
    flash: Flash,
) -> Result<String, carafe::SessionError> {
    barrier.wait().await;
    Ok(render(&flash.take::<String>().await?))
}

/// Loads the session, waits for the other request, then pushes.
async fn wait_push(
    State(barrier): State<Arc<Barrier>>,
    flash: Flash,
    Query(q): Params,
) -> Result<&'static str, carafe::SessionError> {
    barrier.wait().await;
    flash.info(&q["body"])?;
    Ok("pushed")
}

async fn typed_push(flash: Flash) -> Result<Redirect, carafe::SessionError> {
    flash.success(Added {
        product: "tea".into(),
        quantity: 2,
    })?;
    Ok(Redirect::to("/typed"))
}

async fn typed_take(flash: Flash) -> Result<String, carafe::SessionError> {
    let messages = flash.take::<Added>().await?;
    Ok(format!("{messages:?}"))
}

/// Pushes and takes in one request (a page that shows its own notice).
async fn push_and_take(flash: Flash) -> Result<String, carafe::SessionError> {
    flash.warning("shown now")?;
    Ok(render(&flash.take::<String>().await?))
}

async fn logout(session: Session) -> Result<Redirect, carafe::SessionError> {
    session.invalidate();
    Flash::new(&session).info("You are logged out.")?;
    Ok(Redirect::to("/"))
}

async fn delete_then_push(session: Session) -> String {
    session.delete();
    match Flash::new(&session).info("too late") {
        Err(carafe::SessionError::Deleted) => "deleted".into(),
        other => format!("{other:?}"),
    }
}

async fn take_numbers(flash: Flash) -> Result<String, carafe::SessionError> {
    Ok(format!("{:?}", flash.take::<u32>().await?))
}

async fn junk(session: Session) -> &'static str {
    session.insert("_flash.junk", 5).unwrap();
    session
        .insert("_flash.half", serde_json::json!({"level": "loud", "body": 1}))
        .unwrap();
    session.save();
    "junk"
}

async fn push_then_fail(flash: Flash) -> Result<StatusCode, carafe::SessionError> {
    flash.error("never stored")?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn count(flash: Flash) -> String {
    flash.len().to_string()
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(show))
        .route("/push", post(push))
        .route("/wait-take", get(wait_take))
        .route("/wait-push", post(wait_push))
        .route("/typed-push", post(typed_push))
        .route("/typed", get(typed_take))
        .route("/now", get(push_and_take))
        .route("/logout", post(logout))
        .route("/delete-then-push", post(delete_then_push))
        .route("/numbers", get(take_numbers))
        .route("/junk", post(junk))
        .route("/fail", post(push_then_fail))
        .route("/count", get(count))
        .with_state(Arc::new(Barrier::new(2)))
        .layer(layer)
}

fn layer(store: impl carafe::IntoBackend) -> SessionLayer {
    SessionLayer::builder(store).secret(SECRET).build().unwrap()
}

async fn post_to(client: &mut TestClient, path: &str) -> carafe::testing::TestResponse {
    client
        .request(http::Request::post(path).body(axum::body::Body::empty()).unwrap())
        .await
}

/// Every store: the server-side ones and the cookie store.
async fn layers(dir: &std::path::Path) -> Vec<(String, SessionLayer)> {
    let mut layers: Vec<(String, SessionLayer)> = support::stores::server_stores(dir)
        .await
        .into_iter()
        .map(|store| (store.name().to_owned(), layer(store)))
        .collect();
    layers.push(("cookie".into(), layer(CookieStore::new())));
    layers
}

#[tokio::test]
async fn a_message_is_shown_once_after_the_redirect_in_order_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for (name, layer) in layers(dir.path()).await {
        let mut client = TestClient::new(app(layer));
        let r = post_to(&mut client, "/push?level=success&body=Saved").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}");
        post_to(&mut client, "/push?level=error&body=But%20one%20failed").await;
        post_to(&mut client, "/push?level=info&body=Third").await;
        assert_eq!(client.get("/count").await.text(), "3", "{name}");
        assert_eq!(
            client.get("/").await.text(),
            "success: Saved\nerror: But one failed\ninfo: Third",
            "{name}: shown in the order they were pushed"
        );
        assert_eq!(client.get("/").await.text(), "no messages", "{name}: shown once");
        assert_eq!(client.get("/count").await.text(), "0", "{name}");

        let r = post_to(&mut client, "/typed-push").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}");
        assert_eq!(
            client.get("/typed").await.text(),
            r#"[Message { level: Success, body: Added { product: "tea", quantity: 2 } }]"#,
            "{name}: a typed body round-trips"
        );
        assert_eq!(client.get("/typed").await.text(), "[]", "{name}");
    }
}

#[tokio::test]
async fn overlapping_takes_show_each_message_once_on_every_server_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in support::stores::server_stores(dir.path()).await {
        let name = store.name();
        let client = TestClient::new(app(layer(store)));
        let mut setup = client.clone();
        post_to(&mut setup, "/push?level=info&body=once").await;
        let (mut a, mut b) = (setup.clone(), setup.clone());
        let both = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(a.get("/wait-take"), b.get("/wait-take"))
        })
        .await
        .expect("both requests finish");
        let mut shown = [both.0.text(), both.1.text()];
        shown.sort();
        assert_eq!(
            shown,
            ["info: once".to_owned(), "no messages".to_owned()],
            "{name}: both requests loaded the message, one shows it"
        );
        assert_eq!(setup.get("/").await.text(), "no messages", "{name}");
    }
}

#[tokio::test]
async fn overlapping_pushes_keep_both_messages_on_every_server_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in support::stores::server_stores(dir.path()).await {
        let name = store.name();
        let mut client = TestClient::new(app(layer(store)));
        post_to(&mut client, "/push?level=info&body=first").await;
        let (mut a, mut b) = (client.clone(), client.clone());
        let (ra, rb) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(
                post_to(&mut a, "/wait-push?body=a"),
                post_to(&mut b, "/wait-push?body=b")
            )
        })
        .await
        .expect("both requests finish");
        assert_eq!(
            (ra.text(), rb.text()),
            ("pushed".into(), "pushed".into()),
            "{name}"
        );
        let shown = client.get("/").await.text();
        let mut lines: Vec<&str> = shown.lines().collect();
        lines.sort();
        assert_eq!(lines, ["info: a", "info: b", "info: first"], "{name}: none lost");
    }
}

#[tokio::test]
async fn a_message_pushed_and_taken_in_one_request_is_never_stored() {
    let store = Probe::new(MemoryStore::new());
    let mut client = TestClient::new(app(layer(store.clone())));
    let r = client.get("/now").await;
    assert_eq!(r.text(), "warning: shown now");
    assert!(
        r.set_cookies().is_empty(),
        "nothing left to store: no session, no cookie"
    );
    assert_eq!(store.inner.len(), 0);
    assert_eq!(
        store.takes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a new session has no record to take from"
    );
}

#[tokio::test]
async fn logout_with_invalidate_keeps_its_message_and_delete_refuses_one() {
    let mut client = TestClient::new(app(layer(MemoryStore::new())));
    post_to(&mut client, "/push?level=info&body=old").await;
    let before = client.cookie_header();
    let r = post_to(&mut client, "/logout").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_ne!(client.cookie_header(), before, "a new session");
    assert_eq!(
        client.get("/").await.text(),
        "info: You are logged out.",
        "the old session's message went with it; the new one has the logout notice"
    );
    assert_eq!(post_to(&mut client, "/delete-then-push").await.text(), "deleted");
}

#[tokio::test]
async fn a_body_that_does_not_fit_stays_for_a_take_of_its_own_type() {
    let store = Probe::new(MemoryStore::new());
    let mut client = TestClient::new(app(layer(store.clone())));
    post_to(&mut client, "/push?level=info&body=not%20a%20number").await;
    post_to(&mut client, "/typed-push").await;
    let r = client.get("/numbers").await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, "[]".to_owned()),
        "no 500, nothing shown"
    );
    assert_eq!(client.get("/count").await.text(), "2", "both put back, and saved");
    assert_eq!(
        client.get("/typed").await.text(),
        r#"[Message { level: Success, body: Added { product: "tea", quantity: 2 } }]"#,
        "the typed one, for its own type; the text one stays"
    );
    assert_eq!(client.get("/").await.text(), "info: not a number");
    assert_eq!(client.get("/count").await.text(), "0");
}

#[tokio::test]
async fn a_session_holds_at_most_max_messages_the_oldest_go() {
    let mut client = TestClient::new(app(layer(MemoryStore::new())));
    let total = carafe::flash::MAX_MESSAGES + 8;
    for i in 0..total {
        post_to(&mut client, &format!("/push?level=info&body={i}")).await;
    }
    assert_eq!(
        client.get("/count").await.text(),
        carafe::flash::MAX_MESSAGES.to_string()
    );
    let shown = client.get("/").await.text();
    let want: Vec<String> = (8..total).map(|i| format!("info: {i}")).collect();
    assert_eq!(
        shown,
        want.join("\n"),
        "the newest {} in order",
        carafe::flash::MAX_MESSAGES
    );
}

#[tokio::test]
async fn a_page_with_no_message_costs_no_take() {
    let store = Probe::new(MemoryStore::new());
    let mut client = TestClient::new(app(layer(store.clone())));
    post_to(&mut client, "/push?level=info&body=one").await;
    assert_eq!(client.get("/").await.text(), "info: one");
    let takes = || store.takes.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(takes(), 1);
    assert_eq!(client.get("/").await.text(), "no messages");
    assert_eq!(takes(), 1, "the session loaded no message: no store call");
}

#[tokio::test]
async fn a_value_under_a_flash_key_that_is_not_a_message_is_dropped() {
    let mut client = TestClient::new(app(layer(MemoryStore::new())));
    post_to(&mut client, "/junk").await;
    post_to(&mut client, "/push?level=warning&body=real").await;
    assert_eq!(client.get("/count").await.text(), "3");
    let r = client.get("/");
    let r = r.await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "warning: real".to_owned()));
    assert_eq!(client.get("/count").await.text(), "0", "the junk is gone too");
}

#[tokio::test]
async fn a_store_failure_during_the_take_answers_an_error_and_loses_nothing() {
    // Two layers over one store: one whose takes fail, one that works.
    let store = MemoryStore::new();
    let mut client = TestClient::new(app(layer(store.clone())));
    post_to(&mut client, "/push?level=info&body=kept").await;
    let cookie = client.cookie_header().unwrap();
    let mut flaky = TestClient::new(app(layer(FailTakes(store)))).with_cookie(&cookie);
    let r = flaky.get("/").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "session store unavailable\n"),
        "a clear store-failure answer"
    );
    assert_eq!(client.get("/").await.text(), "info: kept", "nothing was taken");
}

#[tokio::test]
async fn a_response_that_fails_stores_no_message() {
    let mut client = TestClient::new(app(layer(MemoryStore::new())));
    post_to(&mut client, "/push?level=info&body=first").await;
    let r = post_to(&mut client, "/fail").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(client.get("/").await.text(), "info: first");
}

/// A store whose `take_prefixed` always fails and whose other calls pass.
#[derive(Debug, Clone)]
struct FailTakes<S>(S);

#[carafe::store::async_trait]
impl<S: SessionStore> SessionStore for FailTakes<S> {
    async fn load(
        &self,
        key: &carafe::store::StoreKey,
    ) -> Result<Option<carafe::store::Record>, carafe::StoreError> {
        self.0.load(key).await
    }
    async fn save(
        &self,
        key: &carafe::store::StoreKey,
        change: &carafe::store::Change,
    ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
        self.0.save(key, change).await
    }
    async fn delete(&self, key: &carafe::store::StoreKey) -> Result<(), carafe::StoreError> {
        self.0.delete(key).await
    }
    async fn cycle(
        &self,
        from: &carafe::store::StoreKey,
        to: &carafe::store::StoreKey,
        change: &carafe::store::Change,
    ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
        self.0.cycle(from, to, change).await
    }
    async fn take_prefixed(
        &self,
        _: &carafe::store::StoreKey,
        _: &str,
    ) -> Result<carafe::store::Data, carafe::StoreError> {
        Err(carafe::StoreError::Timeout(Duration::from_secs(1)))
    }
    async fn delete_expired(&self, now: time::OffsetDateTime) -> Result<u64, carafe::StoreError> {
        self.0.delete_expired(now).await
    }
    fn name(&self) -> &'static str {
        "fail-takes"
    }
}
