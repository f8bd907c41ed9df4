//! A user's sessions end to end (issue 11.4; OWASP "simultaneous logons",
//! ASVS 3.3.3 and 3.3.4): browsers log in as the same user, list each
//! other, revoke one by its handle or all the others after a password
//! change; bad handles revoke nothing and never answer 500. Every scenario
//! runs on the memory and file stores, and on Redis and PostgreSQL when
//! they answer; the cookie store answers a clear 501.

mod support;

use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use carafe::store::sqlx::postgres::PgPoolOptions;
use carafe::store::{PostgresStore, RedisStore};
use carafe::{
    CookieStore, FileStore, MemoryStore, MockClock, Session, SessionError, SessionLayer, SessionStore,
    StoreError,
};
use serde_json::{json, Value};
use support::client::Client;
use support::records::random;
use support::servers::{available, postgres_url, redis_url};
use support::{serve, SECRET};

const IDLE: StdDuration = StdDuration::from_secs(30 * 60);

#[derive(serde::Deserialize)]
struct Fields {
    #[serde(default)]
    user: String,
    #[serde(default)]
    handle: String,
}

/// A session error as the app answers it: 501 for a store that cannot list
/// sessions, 503 for any other store failure.
fn failure(err: SessionError) -> Response {
    match err {
        SessionError::Store(StoreError::Unsupported { .. }) => {
            (StatusCode::NOT_IMPLEMENTED, err.to_string()).into_response()
        }
        other => (StatusCode::SERVICE_UNAVAILABLE, other.to_string()).into_response(),
    }
}

fn routes() -> Router {
    Router::new()
        .route(
            "/login",
            post(|session: Session, Form(f): Form<Fields>| async move {
                session.cycle_id();
                session.set_owner(f.user).unwrap();
                "in"
            }),
        )
        .route(
            "/whoami",
            get(|session: Session| async move {
                session.touch();
                session.owner().unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route(
            "/sessions",
            get(|session: Session| async move {
                match session.owner_sessions().await {
                    Ok(list) => {
                        let list: Vec<Value> = list
                            .iter()
                            .map(|s| {
                                json!({
                                    "handle": s.handle,
                                    "current": s.current,
                                    "created": s.created.unix_timestamp(),
                                    "accessed": s.accessed.unix_timestamp(),
                                    "expires": s.expires.unix_timestamp(),
                                })
                            })
                            .collect();
                        Value::Array(list).to_string().into_response()
                    }
                    Err(err) => failure(err),
                }
            }),
        )
        .route(
            "/revoke",
            post(|session: Session, Form(f): Form<Fields>| async move {
                match session.revoke(&f.handle).await {
                    Ok(true) => StatusCode::NO_CONTENT.into_response(),
                    Ok(false) => (StatusCode::NOT_FOUND, "no such session").into_response(),
                    Err(err) => failure(err),
                }
            }),
        )
        .route(
            "/password",
            post(|session: Session| async move {
                session.cycle_id();
                match session.revoke_other_sessions().await {
                    Ok(n) => n.to_string().into_response(),
                    Err(err) => failure(err),
                }
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.delete();
                "out"
            }),
        )
}

fn layer(store: impl carafe::IntoBackend, clock: &MockClock) -> SessionLayer {
    SessionLayer::builder(store)
        .secret(SECRET)
        .clock(clock.clone())
        .idle_timeout(IDLE)
        .build()
        .unwrap()
}

/// A running app over one store, with its layer (for the admin calls) and
/// its clock.
struct Site {
    addr: SocketAddr,
    layer: SessionLayer,
    clock: MockClock,
}

impl Site {
    async fn new(store: impl SessionStore) -> Site {
        let clock = MockClock::default();
        let layer = layer(store, &clock);
        let addr = serve(routes().layer(layer.clone())).await;
        Site { addr, layer, clock }
    }

    /// A browser logged in as `user`.
    async fn browser(&self, user: &str) -> Client {
        let mut browser = Client::default();
        let reply = browser.post(self.addr, "/login", &format!("user={user}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(browser.cookie.is_some(), "login sets a cookie");
        browser
    }

    async fn whoami(&self, browser: &mut Client) -> String {
        let reply = browser.get(self.addr, "/whoami").await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body
    }

    async fn sessions(&self, browser: &mut Client) -> Vec<Value> {
        let reply = browser.get(self.addr, "/sessions").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        serde_json::from_str::<Vec<Value>>(&reply.body).expect("a JSON list")
    }

    /// The handle `browser` sees for its own session.
    async fn own_handle(&self, browser: &mut Client) -> String {
        let list = self.sessions(browser).await;
        let current: Vec<&Value> = list.iter().filter(|s| s["current"] == json!(true)).collect();
        assert_eq!(current.len(), 1, "exactly one current session in {list:?}");
        current[0]["handle"].as_str().unwrap().to_owned()
    }

    async fn revoke(&self, browser: &mut Client, handle: &str) -> StatusCode {
        let form = format!("handle={}", urlencode(handle));
        browser.post(self.addr, "/revoke", &form).await.status
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// the scenarios, each on a fresh store from `make`

/// Two browsers of one user list each other: two entries, the right one
/// `current` in each, with sane timestamps; handles are stable across
/// requests and are neither the session id nor its store key.
async fn two_browsers_list_each_other(site: &Site) {
    let mut a = site.browser("alice").await;
    let mut b = site.browser("alice").await;
    let _bob = site.browser("bob").await;
    let from_a = site.sessions(&mut a).await;
    let from_b = site.sessions(&mut b).await;
    assert_eq!(from_a.len(), 2, "{from_a:?}");
    assert_eq!(from_b.len(), 2, "{from_b:?}");
    let a_handle = site.own_handle(&mut a).await;
    let b_handle = site.own_handle(&mut b).await;
    assert_ne!(a_handle, b_handle);
    let others_in_a: Vec<&str> = from_a
        .iter()
        .filter(|s| s["current"] == json!(false))
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(others_in_a, [b_handle.as_str()], "a lists b as the other one");
    for s in &from_a {
        let (created, accessed, expires) = (&s["created"], &s["accessed"], &s["expires"]);
        assert!(created.as_i64() <= accessed.as_i64(), "{s}");
        assert!(accessed.as_i64() < expires.as_i64(), "{s}");
    }
    // Stable across requests.
    assert_eq!(site.own_handle(&mut a).await, a_handle);
    // Not the id, not the store key.
    let cookie = a.cookie.clone().unwrap();
    let id = cookie
        .split_once('=')
        .unwrap()
        .1
        .split_once('.')
        .unwrap()
        .0
        .to_owned();
    let key = carafe::SessionId::parse(&id).unwrap().store_key();
    assert!(!a_handle.contains(&id) && !id.contains(&a_handle));
    assert!(!key.as_str().contains(&a_handle) && !a_handle.contains(key.as_str()));
}

/// A browser revokes the other one by its handle: the other's next request
/// is anonymous, the revoking one stays logged in, and the list shrinks.
async fn revoke_by_handle(site: &Site) {
    let mut a = site.browser("alice").await;
    let mut b = site.browser("alice").await;
    let b_handle = site.own_handle(&mut b).await;
    assert_eq!(site.revoke(&mut a, &b_handle).await, StatusCode::NO_CONTENT);
    assert_eq!(site.whoami(&mut b).await, "anonymous");
    assert_eq!(site.whoami(&mut a).await, "alice");
    assert_eq!(site.sessions(&mut a).await.len(), 1);
    // Revoking it again finds nothing.
    assert_eq!(site.revoke(&mut a, &b_handle).await, StatusCode::NOT_FOUND);
    // A browser's own handle signs itself out.
    let a_handle = site.own_handle(&mut a).await;
    assert_eq!(site.revoke(&mut a, &a_handle).await, StatusCode::NO_CONTENT);
    assert_eq!(a.cookie, None, "the revoked browser is told to drop its cookie");
    assert_eq!(site.whoami(&mut a).await, "anonymous");
    assert!(site.layer.owner_sessions("alice").await.expect("list").is_empty());
}

/// After a password change, every other session of the user is revoked;
/// the changing browser and another user's sessions are not.
async fn password_change_revokes_the_others(site: &Site) {
    let mut a = site.browser("alice").await;
    let mut b = site.browser("alice").await;
    let mut c = site.browser("alice").await;
    let mut bob = site.browser("bob").await;
    let reply = a.post(site.addr, "/password", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "2"));
    assert_eq!(site.whoami(&mut b).await, "anonymous");
    assert_eq!(site.whoami(&mut c).await, "anonymous");
    assert_eq!(site.whoami(&mut a).await, "alice");
    assert_eq!(site.whoami(&mut bob).await, "bob");
    assert_eq!(site.sessions(&mut a).await.len(), 1);
    assert_eq!(site.sessions(&mut bob).await.len(), 1);
}

/// Forged, unknown, malformed and another user's handles revoke nothing
/// and answer 404, never 500; a user cannot revoke another user's session
/// even with its real handle.
async fn bad_handles_revoke_nothing(site: &Site) {
    let mut a = site.browser("alice").await;
    let mut b = site.browser("alice").await;
    let mut bob = site.browser("bob").await;
    let b_handle = site.own_handle(&mut b).await;
    let bob_handle = site.own_handle(&mut bob).await;
    let mut tampered = b_handle.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let id = b.cookie.clone().unwrap();
    let id = id
        .split_once('=')
        .unwrap()
        .1
        .split_once('.')
        .unwrap()
        .0
        .to_owned();
    let key = carafe::SessionId::parse(&id)
        .unwrap()
        .store_key()
        .as_str()
        .to_owned();
    for forged in [
        "",
        "x",
        &"A".repeat(43),
        &tampered,
        &b_handle[..42],
        &format!("{b_handle}A"),
        &"é\u{0}\u{202e}".repeat(50),
        &"z".repeat(8 * 1024),
        &bob_handle,
        &id,
        &key,
    ] {
        assert_eq!(
            site.revoke(&mut a, forged).await,
            StatusCode::NOT_FOUND,
            "{forged:?}"
        );
    }
    // Bob holds alice's real handle: still nothing.
    assert_eq!(site.revoke(&mut bob, &b_handle).await, StatusCode::NOT_FOUND);
    assert_eq!(site.whoami(&mut b).await, "alice");
    assert_eq!(site.whoami(&mut bob).await, "bob");
    // An anonymous browser has no sessions and revokes nothing.
    let mut stranger = Client::default();
    assert_eq!(site.sessions(&mut stranger).await, Vec::<Value>::new());
    assert_eq!(site.revoke(&mut stranger, &b_handle).await, StatusCode::NOT_FOUND);
    assert_eq!(site.whoami(&mut b).await, "alice");
}

/// An expired session is never listed, by the layer's clock: the idle one
/// drops off the list of the one kept alive. A logout takes a session off
/// at once.
async fn expired_and_logged_out_are_not_listed(site: &Site) {
    let mut a = site.browser("alice").await;
    let _idle = site.browser("alice").await;
    let mut leaving = site.browser("alice").await;
    assert_eq!(site.sessions(&mut a).await.len(), 3);
    leaving.post(site.addr, "/logout", "").await;
    assert_eq!(site.sessions(&mut a).await.len(), 2);
    site.clock.advance(IDLE - StdDuration::from_secs(60));
    assert_eq!(site.whoami(&mut a).await, "alice"); // a's touch
    site.clock.advance(StdDuration::from_secs(120));
    let list = site.sessions(&mut a).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["current"], json!(true));
}

/// The layer-level calls an admin tool uses without a request: list a
/// user's sessions (none current), revoke one by handle, revoke them all.
async fn admin_lists_and_revokes(site: &Site) {
    let mut a = site.browser("carol").await;
    let mut b = site.browser("carol").await;
    let mut c = site.browser("carol").await;
    let mut dave = site.browser("dave").await;
    let listed = site.layer.owner_sessions("carol").await.expect("list");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|s| !s.current));
    let c_handle = site.own_handle(&mut c).await;
    assert!(listed.iter().any(|s| s.handle == c_handle));
    assert!(!site
        .layer
        .revoke_owner_session("dave", &c_handle)
        .await
        .expect("revoke"));
    assert!(site
        .layer
        .revoke_owner_session("carol", &c_handle)
        .await
        .expect("revoke"));
    assert_eq!(site.whoami(&mut c).await, "anonymous");
    assert_eq!(site.layer.revoke_owner("carol").await.expect("revoke all"), 2);
    assert_eq!(site.whoami(&mut a).await, "anonymous");
    assert_eq!(site.whoami(&mut b).await, "anonymous");
    assert_eq!(site.whoami(&mut dave).await, "dave");
    assert!(site.layer.owner_sessions("carol").await.expect("list").is_empty());
}

/// Every scenario, each on a fresh store from `make`.
async fn scenarios<S, F, Fut>(make: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    two_browsers_list_each_other(&Site::new(make().await).await).await;
    revoke_by_handle(&Site::new(make().await).await).await;
    password_change_revokes_the_others(&Site::new(make().await).await).await;
    bad_handles_revoke_nothing(&Site::new(make().await).await).await;
    expired_and_logged_out_are_not_listed(&Site::new(make().await).await).await;
    admin_lists_and_revokes(&Site::new(make().await).await).await;
}

// ---------------------------------------------------------------------------
// the stores

#[tokio::test]
async fn a_users_sessions_on_the_memory_store() {
    scenarios(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn a_users_sessions_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    scenarios(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("sessions-{i}"));
        async move { FileStore::new(path).unwrap() }
    })
    .await;
}

#[tokio::test]
async fn a_users_sessions_on_redis() {
    let url = redis_url();
    let probe = RedisStore::new(&url).expect("valid URL");
    let Some(()) = available("Redis", &url, probe.ping().await) else {
        return;
    };
    let prefix = format!("carafe-test:{}", &carafe::SessionId::generate().expose()[..16]);
    let n = std::sync::atomic::AtomicUsize::new(0);
    scenarios(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store = RedisStore::builder(url.as_str())
            .prefix(format!("{prefix}:{i}"))
            .build()
            .expect("valid URL");
        async move { store }
    })
    .await;
    // No clean-up needed: every key the scenarios leave (sessions and
    // owner indexes) carries a TTL of at most the idle timeout.
}

#[tokio::test]
async fn a_users_sessions_on_postgres() {
    let url = postgres_url();
    let connected = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(StdDuration::from_secs(3))
        .connect(&url)
        .await;
    let Some(pool) = available("PostgreSQL", &url, connected) else {
        return;
    };
    let schema = random("carafe_owners_");
    carafe::store::sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .expect("create schema");
    let (on, name) = (pool.clone(), schema.clone());
    let made = scenarios(move || {
        let store = PostgresStore::builder(on.clone())
            .schema(&name)
            .table(random("sessions_"))
            .build()
            .expect("valid names");
        async move {
            store.migrate().await.expect("migrate");
            store
        }
    });
    let outcome = tokio::spawn(made).await;
    carafe::store::sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .expect("drop schema");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// The cookie store keeps nothing on the server to list: the calls answer
/// a clear `Unsupported` error (here a 501), never a 500 or a panic, and
/// the layer-level calls say the same.
#[tokio::test]
async fn the_cookie_store_says_it_cannot() {
    let clock = MockClock::default();
    let layer = layer(CookieStore::new(), &clock);
    let addr = serve(routes().layer(layer.clone())).await;
    let mut a = Client::default();
    a.post(addr, "/login", "user=alice").await;
    assert_eq!(a.get(addr, "/whoami").await.body, "alice");
    let reply = a.get(addr, "/sessions").await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED, "{}", reply.body);
    assert!(reply.body.contains("rotate the secret"), "{}", reply.body);
    assert_eq!(
        a.post(addr, "/revoke", "handle=x").await.status,
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        a.post(addr, "/password", "").await.status,
        StatusCode::NOT_IMPLEMENTED
    );
    assert!(matches!(
        layer.owner_sessions("alice").await,
        Err(StoreError::Unsupported { store: "cookie", .. })
    ));
    assert!(matches!(
        layer.revoke_owner("alice").await,
        Err(StoreError::Unsupported { .. })
    ));
}

/// A custom store written against the trait before `list_owned` existed
/// inherits the default: a clear `Unsupported` naming the store.
#[tokio::test]
async fn a_store_without_list_owned_answers_unsupported() {
    #[derive(Debug)]
    struct Old(MemoryStore);
    #[async_trait::async_trait]
    impl SessionStore for Old {
        async fn load(
            &self,
            key: &carafe::store::StoreKey,
        ) -> Result<Option<carafe::store::Record>, StoreError> {
            self.0.load(key).await
        }
        async fn save(
            &self,
            key: &carafe::store::StoreKey,
            change: &carafe::store::Change,
        ) -> Result<carafe::store::SaveOutcome, StoreError> {
            self.0.save(key, change).await
        }
        async fn delete(&self, key: &carafe::store::StoreKey) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        async fn cycle(
            &self,
            from: &carafe::store::StoreKey,
            to: &carafe::store::StoreKey,
            change: &carafe::store::Change,
        ) -> Result<carafe::store::SaveOutcome, StoreError> {
            self.0.cycle(from, to, change).await
        }
        async fn take_prefixed(
            &self,
            key: &carafe::store::StoreKey,
            prefix: &str,
        ) -> Result<carafe::store::Data, StoreError> {
            self.0.take_prefixed(key, prefix).await
        }
        async fn delete_expired(&self, now: time::OffsetDateTime) -> Result<u64, StoreError> {
            self.0.delete_expired(now).await
        }
        fn name(&self) -> &'static str {
            "old"
        }
    }
    let site = Site::new(Old(MemoryStore::new())).await;
    let mut a = site.browser("alice").await;
    let reply = a.get(site.addr, "/sessions").await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED, "{}", reply.body);
    assert!(reply.body.contains("old"), "{}", reply.body);
    assert_eq!(site.revoke(&mut a, "x").await, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(site.whoami(&mut a).await, "alice");
}
