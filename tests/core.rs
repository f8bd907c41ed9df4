//! The runtime core through `tower::ServiceExt::oneshot`: laziness, save
//! semantics, cookies, signing, expiry, fixation, races and failures.

mod support;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use carafe::{CookieExpiry, MemoryStore, MockClock, Session, SessionLayer, SessionStore};
use http::StatusCode;
use support::*;
use time::Duration;

fn layer_for(store: impl SessionStore, clock: &MockClock) -> carafe::SessionLayerBuilder {
    SessionLayer::builder(store).secret(SECRET).clock(clock.clone())
}

/// The counter app used by most tests.
fn counter_app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/count",
            get(|session: Session| async move {
                let n = session.get::<u32>("count").unwrap().unwrap_or(0) + 1;
                session.insert("count", n).unwrap();
                format!("count: {n}")
            }),
        )
        .route(
            "/count-save",
            get(|session: Session| async move {
                let n = session.get::<u32>("count").unwrap().unwrap_or(0) + 1;
                session.insert("count", n).unwrap();
                session.save();
                format!("count: {n}")
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move { format!("{:?}", session.get::<u32>("count").unwrap()) }),
        )
        .route(
            "/persist",
            get(|session: Session| async move {
                session.insert("persisted", true).unwrap();
                session.persist().await.unwrap();
                "persisted"
            }),
        )
        .route(
            "/login",
            post(|session: Session| async move {
                session.insert("user", "ada").unwrap();
                session.cycle_id();
                "logged in"
            }),
        )
        .route(
            "/whoami",
            get(|session: Session| async move {
                session
                    .get::<String>("user")
                    .unwrap()
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
        .route(
            "/invalidate",
            post(|session: Session| async move {
                session.invalidate();
                session.insert("fresh", 1).unwrap();
                session.save();
                "invalidated"
            }),
        )
        .route(
            "/fail",
            get(|session: Session| async move {
                session.insert("count", 999).unwrap();
                (StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }),
        )
        .route(
            "/times",
            get(|session: Session| async move {
                format!(
                    "{} {} {:?}",
                    session.created().unix_timestamp(),
                    session.accessed().unix_timestamp(),
                    session.last_accessed().map(|t| t.unix_timestamp())
                )
            }),
        )
        .layer(layer)
}

fn auto_app(store: impl SessionStore, clock: &MockClock) -> Router {
    counter_app(layer_for(store, clock).auto(true).secure(false).build().unwrap())
}

#[tokio::test]
async fn untouched_route_makes_no_store_call_and_no_cookie() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let first = req(&app, "/count", None).await;
    let cookie = first.cookie().unwrap();
    let calls = store.calls();
    for c in [None, Some(cookie.as_str()), Some("__Host-carafe.sid=garbage")] {
        let r = req(&app, "/health", c).await;
        assert_eq!(r.status, 200);
        assert!(r.set_cookies.is_empty());
    }
    assert_eq!(
        store.calls(),
        calls,
        "a route that never touches the session must not reach the store"
    );
}

#[tokio::test]
async fn new_unmodified_session_is_not_stored_and_gets_no_cookie() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let r = req(&app, "/read", None).await;
    assert_eq!(r.body, "None");
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.saves(), 0);
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn auto_saves_modified_session_and_sets_cookie_once() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let r1 = req(&app, "/count", None).await;
    assert_eq!(r1.body, "count: 1");
    let cookie = r1.cookie().expect("a new stored session gets a cookie");
    let r2 = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r2.body, "count: 2");
    assert!(
        r2.set_cookies.is_empty(),
        "same id, browser-session cookie: no Set-Cookie"
    );
    assert_eq!(store.inner.len(), 1);
}

#[tokio::test]
async fn without_auto_nothing_is_written_unless_saved() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = counter_app(layer_for(store.clone(), &clock).build().unwrap());
    let r = req(&app, "/count", None).await;
    assert!(r.set_cookies.is_empty());
    assert!(store.inner.is_empty());
    let r = req(&app, "/count-save", None).await;
    let cookie = r.cookie().unwrap();
    assert_eq!(store.inner.len(), 1);
    // modified without save(): not written
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 2");
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(1)");
    assert_eq!(req(&app, "/count-save", Some(&cookie)).await.body, "count: 2");
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(2)");
}

#[tokio::test]
async fn persist_writes_during_the_request() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let seen = store.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |session: Session| {
                let seen = seen.clone();
                async move {
                    session.insert("k", 1).unwrap();
                    session.persist().await.unwrap();
                    // written before the handler returns, even though it then fails
                    assert_eq!(seen.len(), 1);
                    (StatusCode::INTERNAL_SERVER_ERROR, "after persist")
                }
            }),
        )
        .layer(layer_for(store.clone(), &clock).build().unwrap());
    let r = req(&app, "/", None).await;
    assert_eq!(r.status, 500);
    assert!(
        r.cookie().is_some(),
        "a persisted new session still gets its cookie"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn set_cookie_has_safe_attributes_and_cache_headers() {
    let clock = MockClock::default();
    let app = counter_app(layer_for(MemoryStore::new(), &clock).auto(true).build().unwrap());
    let r = req(&app, "/count", None).await;
    let set = &r.set_cookies[0];
    assert!(set.starts_with("__Host-carafe.sid="), "{set}");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(
        !set.contains("Max-Age"),
        "browser-session cookie by default: {set}"
    );
    assert_eq!(r.headers["vary"], "Cookie");
    assert_eq!(r.headers["cache-control"], "private, no-cache=\"Set-Cookie\"");
}

#[tokio::test]
async fn app_cache_control_is_kept() {
    let clock = MockClock::default();
    let app = Router::new()
        .route(
            "/",
            get(|session: Session| async move {
                session.insert("a", 1).unwrap();
                ([(http::header::CACHE_CONTROL, "private, max-age=0")], "x")
            }),
        )
        .layer(layer_for(MemoryStore::new(), &clock).auto(true).build().unwrap());
    let r = req(&app, "/", None).await;
    assert!(r.cookie().is_some());
    assert_eq!(r.headers["cache-control"], "private, max-age=0");
    assert_eq!(r.headers["vary"], "Cookie");
}

#[tokio::test]
async fn cookie_options_are_applied() {
    let clock = MockClock::default();
    let layer = layer_for(MemoryStore::new(), &clock)
        .auto(true)
        .cookie_name("app")
        .cookie_path("/app")
        .cookie_domain("example.com")
        .same_site(carafe::SameSite::Strict)
        .http_only(false)
        .cookie_expires(CookieExpiry::MaxAge(std::time::Duration::from_secs(60 * 60)))
        .build()
        .unwrap();
    let app = counter_app(layer);
    let r = req(&app, "/count", None).await;
    let set = &r.set_cookies[0];
    assert!(set.starts_with("app="), "{set}");
    for attr in [
        "Path=/app",
        "Domain=example.com",
        "SameSite=Strict",
        "Max-Age=3600",
        "Expires=",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(!set.contains("HttpOnly"));
}

#[tokio::test]
async fn max_age_cookie_is_refreshed_when_the_session_is_written() {
    let clock = MockClock::default();
    let layer = layer_for(MemoryStore::new(), &clock)
        .auto(true)
        .cookie_expires(CookieExpiry::MaxAge(std::time::Duration::from_secs(60 * 60)))
        .build()
        .unwrap();
    let app = counter_app(layer);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(
        r.cookie().as_deref(),
        Some(cookie.as_str()),
        "same id, new expiry"
    );
    assert!(r.set_cookies[0].contains("Max-Age=3600"));
    // a read inside the accessed-time interval writes nothing: no refresh
    let r = req(&app, "/read", Some(&cookie)).await;
    assert!(r.set_cookies.is_empty());
}

#[tokio::test]
async fn fixed_expiry_cookie() {
    let clock = MockClock::default();
    let at = time::macros::datetime!(2040-01-01 0:00 UTC);
    let layer = layer_for(MemoryStore::new(), &clock)
        .auto(true)
        .cookie_expires(CookieExpiry::At(at))
        .build()
        .unwrap();
    let r = req(&counter_app(layer), "/count", None).await;
    assert!(
        r.set_cookies[0].contains("Expires=Sun, 01 Jan 2040 00:00:00 GMT"),
        "{}",
        r.set_cookies[0]
    );
}

#[tokio::test]
async fn bad_cookies_get_a_fresh_session_with_a_fresh_id() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = auto_app(store.clone(), &clock);
    let good = req(&app, "/count", None).await.cookie_value().unwrap();
    let (id, tag) = good.split_once('.').unwrap();
    let other_id = carafe::SessionId::generate().expose();
    let flip = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b[0] = if b[0] == b'a' { b'b' } else { b'a' };
        String::from_utf8(b).unwrap()
    };
    let hostile = [
        format!("{other_id}.{tag}"),          // forged: tag of another id
        format!("{}.{tag}", flip(id)),        // tampered id
        format!("{id}.{}", flip(tag)),        // tampered tag
        good[..good.len() - 3].to_owned(),    // truncated
        format!("{good}AAAA"),                // extended
        id.to_owned(),                        // no tag
        format!("{id}."),                     // empty tag
        "x".repeat(10_000),                   // oversized
        format!("../../../etc/passwd.{tag}"), // path
        String::new(),
        "%00%ff".into(),
    ];
    for value in &hostile {
        let r = req(&app, "/count", Some(&format!("carafe.sid={value}"))).await;
        assert_eq!(r.status, 200, "{value:?}");
        assert_eq!(r.body, "count: 1", "{value:?} must not load a session");
        let new = r.cookie_value().unwrap();
        assert_ne!(new.split('.').next(), Some(id));
        assert_ne!(
            new.split('.').next(),
            Some(other_id.as_str()),
            "an unknown id is never adopted"
        );
    }
    // non-UTF-8 cookie header
    let request = http::Request::builder()
        .uri("/count")
        .header(
            http::header::COOKIE,
            http::HeaderValue::from_bytes(b"carafe.sid=\xff\xfe").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let r = reply(tower::ServiceExt::oneshot(app.clone(), request).await.unwrap()).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "count: 1"));
    // the good cookie still works among hostile ones
    let r = req(
        &app,
        "/count",
        Some(&format!("carafe.sid=junk; carafe.sid={good}")),
    )
    .await;
    assert_eq!(r.body, "count: 2");
}

#[tokio::test]
async fn a_validly_signed_unknown_id_is_not_adopted() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = auto_app(store.clone(), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    // the session disappears server-side (expired, reaped, store flushed)
    store.delete_expired(clock.now_plus_years()).await.unwrap();
    assert!(store.is_empty());
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 1");
    assert_ne!(
        r.cookie().unwrap(),
        cookie,
        "the known-signed but unknown id must not be reused"
    );
}

trait Later {
    fn now_plus_years(&self) -> time::OffsetDateTime;
}
impl Later for MockClock {
    fn now_plus_years(&self) -> time::OffsetDateTime {
        carafe::Clock::now(self) + Duration::days(3650)
    }
}

#[tokio::test]
async fn key_rotation_accepts_old_and_signs_with_new() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let old_secret = b"the old secret, at least thirty-two bytes";
    let new_secret = b"the new secret, at least thirty-two bytes";
    let old_app = counter_app(
        SessionLayer::builder(store.clone())
            .secret(old_secret)
            .clock(clock.clone())
            .auto(true)
            .build()
            .unwrap(),
    );
    let cookie = req(&old_app, "/count", None).await.cookie().unwrap();
    let rotated = counter_app(
        SessionLayer::builder(store.clone())
            .secret(new_secret)
            .old_secret(old_secret)
            .clock(clock.clone())
            .auto(true)
            .build()
            .unwrap(),
    );
    assert_eq!(req(&rotated, "/count", Some(&cookie)).await.body, "count: 2");
    // new cookies are signed with the new secret only
    let fresh = req(&rotated, "/count", None).await.cookie().unwrap();
    let new_only = counter_app(
        SessionLayer::builder(store.clone())
            .secret(new_secret)
            .clock(clock.clone())
            .auto(true)
            .build()
            .unwrap(),
    );
    assert_eq!(req(&new_only, "/count", Some(&fresh)).await.body, "count: 2");
    assert_eq!(req(&old_app, "/count", Some(&fresh)).await.body, "count: 1");
    // once the old secret is dropped, its cookies stop working
    assert_eq!(req(&new_only, "/count", Some(&cookie)).await.body, "count: 1");
}

#[test]
fn configuration_errors_are_reported_at_build() {
    use carafe::ConfigError;
    let b = || SessionLayer::builder(MemoryStore::new());
    assert_eq!(b().build().unwrap_err(), ConfigError::MissingSecret);
    assert_eq!(
        b().secret([1u8; 31]).build().unwrap_err(),
        ConfigError::SecretTooShort { len: 31, min: 32 }
    );
    assert!(matches!(
        b().secret(SECRET).old_secret("short").build().unwrap_err(),
        ConfigError::SecretTooShort { len: 5, .. }
    ));
    assert!(b().secret([1u8; 32]).build().is_ok());
    assert!(matches!(
        b().secret(SECRET).cookie_name("").build(),
        Err(ConfigError::InvalidCookieName(_))
    ));
    assert!(matches!(
        b().secret(SECRET).cookie_name("a=b").build(),
        Err(ConfigError::InvalidCookieName(_))
    ));
    assert!(matches!(
        b().secret(SECRET).cookie_path("no-slash").build(),
        Err(ConfigError::InvalidCookieAttribute { .. })
    ));
    assert!(matches!(
        b().secret(SECRET).cookie_domain("a;b").build(),
        Err(ConfigError::InvalidCookieAttribute { .. })
    ));
    assert_eq!(
        b().secret(SECRET)
            .same_site(carafe::SameSite::None)
            .secure(false)
            .build()
            .unwrap_err(),
        ConfigError::SameSiteNoneWithoutSecure
    );
    assert!(matches!(
        b().secret(SECRET).idle_timeout(std::time::Duration::ZERO).build(),
        Err(ConfigError::NonPositive { .. })
    ));
    assert!(matches!(
        b().secret(SECRET)
            .store_timeout(std::time::Duration::ZERO)
            .build(),
        Err(ConfigError::NonPositive { .. })
    ));
}

#[tokio::test]
async fn idle_timeout_expires_sessions_and_deletes_the_record() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = counter_app(
        layer_for(store.clone(), &clock)
            .auto(true)
            .idle_timeout(std::time::Duration::from_secs(30 * 60))
            .build()
            .unwrap(),
    );
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    clock.advance(std::time::Duration::from_secs(29 * 60));
    assert_eq!(req(&app, "/count", Some(&cookie)).await.body, "count: 2");
    clock.advance(std::time::Duration::from_secs(29 * 60)); // 29 min after the last write: still alive
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(2)");
    clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "None");
    assert!(store.is_empty(), "an expired record is deleted when found");
}

#[tokio::test]
async fn accessed_time_refresh_keeps_a_reading_session_alive() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = counter_app(
        layer_for(store.clone(), &clock)
            .auto(true)
            .idle_timeout(std::time::Duration::from_secs(30 * 60))
            .accessed_time_interval(std::time::Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let saves = store.saves();
    // reads within the interval do not write
    clock.advance(std::time::Duration::from_secs(30));
    req(&app, "/read", Some(&cookie)).await;
    assert_eq!(store.saves(), saves);
    // a read after the interval writes a touch (timestamps only)
    for _ in 0..4 {
        clock.advance(std::time::Duration::from_secs(20 * 60));
        assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(1)");
        let change = store.last_change().unwrap();
        assert!(change.is_touch(), "{change:?}");
    }
    assert_eq!(store.saves(), saves + 4);
}

#[tokio::test]
async fn without_save_accessed_time_reads_never_write() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = counter_app(
        layer_for(store.clone(), &clock)
            .auto(true)
            .save_accessed_time(false)
            .idle_timeout(std::time::Duration::from_secs(30 * 60))
            .build()
            .unwrap(),
    );
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let saves = store.saves();
    clock.advance(std::time::Duration::from_secs(20 * 60));
    req(&app, "/read", Some(&cookie)).await;
    clock.advance(std::time::Duration::from_secs(20 * 60));
    assert_eq!(store.saves(), saves);
    // idle counts from the last write
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "None");
}

#[tokio::test]
async fn absolute_lifetime_ends_even_an_active_session() {
    let clock = MockClock::default();
    let app = counter_app(
        layer_for(MemoryStore::new(), &clock)
            .auto(true)
            .idle_timeout(std::time::Duration::from_secs(30 * 60))
            .absolute_lifetime(std::time::Duration::from_secs(2 * 60 * 60))
            .build()
            .unwrap(),
    );
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    for n in 2..=5 {
        clock.advance(std::time::Duration::from_secs(25 * 60));
        assert_eq!(
            req(&app, "/count", Some(&cookie)).await.body,
            format!("count: {n}")
        );
    }
    clock.advance(std::time::Duration::from_secs(25 * 60)); // 125 minutes after creation
    assert_eq!(req(&app, "/count", Some(&cookie)).await.body, "count: 1");
}

#[tokio::test]
async fn created_accessed_and_last_accessed() {
    let clock = MockClock::default();
    let app = auto_app(MemoryStore::new(), &clock);
    let t0 = carafe::Clock::now(&clock).unix_timestamp();
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    clock.advance(std::time::Duration::from_secs(5 * 60));
    let r = req(&app, "/times", Some(&cookie)).await;
    assert_eq!(r.body, format!("{t0} {} Some({t0})", t0 + 300));
    clock.advance(std::time::Duration::from_secs(5 * 60));
    let r = req(&app, "/times", Some(&cookie)).await;
    assert_eq!(
        r.body,
        format!("{t0} {} Some({})", t0 + 600, t0 + 300),
        "the previous read refreshed the accessed time"
    );
    let fresh = req(&app, "/times", None).await;
    assert!(fresh.body.ends_with("None"), "{}", fresh.body);
}

#[tokio::test]
async fn login_cycles_the_id_and_the_old_id_is_dead() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = auto_app(store.clone(), &clock);
    let before = req(&app, "/count", None).await.cookie().unwrap();
    let r = send(&app, "POST", "/login", Some(&before), None).await;
    let after = r.cookie().expect("a new id means a new cookie");
    assert_ne!(after, before);
    assert_eq!(req(&app, "/whoami", Some(&after)).await.body, "ada");
    assert_eq!(
        req(&app, "/read", Some(&after)).await.body,
        "Some(1)",
        "data kept"
    );
    assert_eq!(req(&app, "/whoami", Some(&before)).await.body, "anonymous");
    assert_eq!(store.len(), 1, "the old record is gone");
}

#[tokio::test]
async fn logout_deletes_the_record_and_expires_the_cookie() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = auto_app(store.clone(), &clock);
    let cookie = send(&app, "POST", "/login", None, None).await.cookie().unwrap();
    assert_eq!(store.len(), 1);
    let r = send(&app, "POST", "/logout", Some(&cookie), None).await;
    assert_eq!(r.body, "logged out");
    assert!(r.removes_cookie(), "{:?}", r.set_cookies);
    assert!(store.is_empty());
    assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
}

#[tokio::test]
async fn invalidate_gives_a_new_session() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    let app = auto_app(store.clone(), &clock);
    let cookie = send(&app, "POST", "/login", None, None).await.cookie().unwrap();
    let r = send(&app, "POST", "/invalidate", Some(&cookie), None).await;
    let new = r.cookie().unwrap();
    assert_ne!(new, cookie);
    assert!(!r.removes_cookie());
    assert_eq!(req(&app, "/whoami", Some(&new)).await.body, "anonymous");
    assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_5xx_response_writes_nothing_with_auto() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let saves = store.saves();
    let r = req(&app, "/fail", Some(&cookie)).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.saves(), saves);
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(1)");
    // a new session on a failing request is not stored either
    let r = req(&app, "/fail", None).await;
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.inner.len(), 1);
}

#[tokio::test]
async fn a_panicking_handler_writes_nothing() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let layer = layer_for(store.clone(), &clock).auto(true).build().unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|session: Session| async move {
                session.insert("k", 1).unwrap();
                if session.len() == 1 {
                    panic!("handler panicked");
                }
                "unreachable"
            }),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(layer);
    let r = req(&app, "/", None).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.saves(), 0);
}

#[tokio::test]
async fn store_failure_is_a_500_and_keeps_the_cookie() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    store.fail(true);
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "session store unavailable\n");
    assert!(
        r.set_cookies.is_empty(),
        "no cookie is destroyed by a store outage"
    );
    assert_eq!(req(&app, "/health", Some(&cookie)).await.status, 200);
    store.fail(false);
    assert_eq!(
        req(&app, "/count", Some(&cookie)).await.body,
        "count: 2",
        "the session survived the outage"
    );
}

#[tokio::test]
async fn store_failure_while_saving_is_a_500() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let fail = store.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |session: Session| {
                let fail = fail.clone();
                async move {
                    session.insert("k", 1).unwrap();
                    fail.fail(true);
                    "written?"
                }
            }),
        )
        .layer(layer_for(store.clone(), &clock).auto(true).build().unwrap());
    let r = req(&app, "/", None).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
}

#[tokio::test]
async fn a_hung_store_times_out() {
    #[derive(Debug)]
    struct Hang;
    #[carafe::store::async_trait]
    impl SessionStore for Hang {
        async fn load(
            &self,
            _: &carafe::store::StoreKey,
        ) -> Result<Option<carafe::store::Record>, carafe::StoreError> {
            std::future::pending().await
        }
        async fn save(
            &self,
            _: &carafe::store::StoreKey,
            _: &carafe::store::Change,
        ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
            std::future::pending().await
        }
        async fn take_prefixed(
            &self,
            _: &carafe::store::StoreKey,
            _: &str,
        ) -> Result<carafe::store::Data, carafe::StoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: &carafe::store::StoreKey) -> Result<(), carafe::StoreError> {
            std::future::pending().await
        }
        async fn cycle(
            &self,
            _: &carafe::store::StoreKey,
            _: &carafe::store::StoreKey,
            _: &carafe::store::Change,
        ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
            std::future::pending().await
        }
        async fn delete_expired(&self, _: time::OffsetDateTime) -> Result<u64, carafe::StoreError> {
            std::future::pending().await
        }
        fn name(&self) -> &'static str {
            "hang"
        }
    }
    let clock = MockClock::default();
    let app = counter_app(
        layer_for(Hang, &clock)
            .secure(false)
            .store_timeout(std::time::Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    // a bounded wait: the request must end by itself, well within 10 s
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), req(&app, "/count", None))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "a new session needs no store read");
    let app2 = app.clone();
    let valid = {
        // get a validly signed cookie from a working layer with the same secret
        let ok = auto_app(MemoryStore::new(), &clock);
        req(&ok, "/count", None).await.cookie().unwrap()
    };
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        req(&app2, "/count", Some(&valid)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn corrupt_record_is_a_fresh_session() {
    #[derive(Debug, Clone)]
    struct Corrupt(MemoryStore);
    #[carafe::store::async_trait]
    impl SessionStore for Corrupt {
        async fn load(
            &self,
            key: &carafe::store::StoreKey,
        ) -> Result<Option<carafe::store::Record>, carafe::StoreError> {
            match self.0.load(key).await? {
                Some(_) => Err(carafe::StoreError::Corrupt("bad json".into())),
                None => Ok(None),
            }
        }
        async fn save(
            &self,
            k: &carafe::store::StoreKey,
            c: &carafe::store::Change,
        ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
            self.0.save(k, c).await
        }
        async fn delete(&self, k: &carafe::store::StoreKey) -> Result<(), carafe::StoreError> {
            self.0.delete(k).await
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
            key: &carafe::store::StoreKey,
            prefix: &str,
        ) -> Result<carafe::store::Data, carafe::StoreError> {
            self.0.take_prefixed(key, prefix).await
        }
        async fn delete_expired(&self, now: time::OffsetDateTime) -> Result<u64, carafe::StoreError> {
            self.0.delete_expired(now).await
        }
        fn name(&self) -> &'static str {
            "corrupt"
        }
    }
    let clock = MockClock::default();
    let inner = MemoryStore::new();
    let app = auto_app(Corrupt(inner.clone()), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "count: 1"));
    assert_ne!(r.cookie().unwrap(), cookie);
    assert_eq!(
        inner.len(),
        1,
        "the corrupt record was deleted, the new one stored"
    );
}

#[tokio::test]
async fn missing_layer_is_a_clear_500() {
    let app: Router = Router::new().route("/", get(|_s: Session| async { "x" }));
    let r = req(&app, "/", None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "session layer missing\n");
}

#[tokio::test]
async fn session_is_loaded_once_per_request() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = Router::new()
        .route(
            "/",
            get(|a: Session, b: Session| async move {
                a.insert("k", 1).unwrap();
                let seen: Option<u32> = b.get("k").unwrap();
                let c = Session::from_extensions(&http::Extensions::new()).await.is_err();
                format!("{seen:?} {c}")
            }),
        )
        .layer(layer_for(store.clone(), &clock).auto(true).build().unwrap());
    let cookie = req(&app, "/", None).await.cookie().unwrap();
    let loads = store.loads.load(std::sync::atomic::Ordering::SeqCst);
    let r = req(&app, "/", Some(&cookie)).await;
    assert_eq!(r.body, "Some(1) true");
    assert_eq!(store.loads.load(std::sync::atomic::Ordering::SeqCst), loads + 1);
}

#[tokio::test]
async fn writing_the_same_value_is_not_a_change() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                s.insert("k", 1).unwrap();
                "ok"
            }),
        )
        .route(
            "/toggle",
            get(|s: Session| async move {
                s.insert("k", 2).unwrap();
                s.insert("k", 1).unwrap();
                s.remove("nothing");
                "ok"
            }),
        )
        .layer(layer_for(store.clone(), &clock).auto(true).build().unwrap());
    let cookie = req(&app, "/", None).await.cookie().unwrap();
    // The cookie's first return confirms the new session: one timestamp
    // write that gives it its full idle timeout (see unconfirmed_timeout).
    let saves = store.saves();
    req(&app, "/", Some(&cookie)).await;
    assert_eq!(store.saves(), saves + 1, "the confirming write");
    let saves = store.saves();
    req(&app, "/", Some(&cookie)).await;
    req(&app, "/toggle", Some(&cookie)).await;
    assert_eq!(store.saves(), saves, "restoring the old value writes nothing");
}

#[tokio::test]
async fn only_changed_keys_reach_the_store() {
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = Router::new()
        .route(
            "/init",
            get(|s: Session| async move {
                for i in 0..20 {
                    s.insert(format!("k{i}"), i).unwrap();
                }
                "ok"
            }),
        )
        .route(
            "/one",
            get(|s: Session| async move {
                s.insert("k3", "changed").unwrap();
                s.remove("k4");
                "ok"
            }),
        )
        .layer(layer_for(store.clone(), &clock).auto(true).build().unwrap());
    let cookie = req(&app, "/init", None).await.cookie().unwrap();
    req(&app, "/one", Some(&cookie)).await;
    let change = store.last_change().unwrap();
    assert_eq!(change.kind, carafe::store::SaveKind::Update);
    assert_eq!(change.set.keys().collect::<Vec<_>>(), ["k3"]);
    assert_eq!(change.removed, ["k4"]);
}

/// 50 overlapping requests on one session, each writing its own key.
async fn overlapping_writes_keep_every_key(store: impl SessionStore + Clone) {
    let clock = MockClock::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let b = barrier.clone();
    let app = Router::new()
        .route(
            "/init",
            get(|s: Session| async move {
                s.insert("init", true).unwrap();
                "ok"
            }),
        )
        .route(
            "/w/{n}",
            get(
                move |axum::extract::Path(n): axum::extract::Path<u32>, s: Session| {
                    let b = b.clone();
                    async move {
                        // every request has loaded before any writes
                        b.wait().await;
                        s.insert(format!("key{n}"), n).unwrap();
                        "ok"
                    }
                },
            ),
        )
        .route("/keys", get(|s: Session| async move { s.len().to_string() }))
        .layer(layer_for(store, &clock).auto(true).build().unwrap());
    let cookie = req(&app, "/init", None).await.cookie().unwrap();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let app = app.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            req(&app, &format!("/w/{n}"), Some(&cookie)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(req(&app, "/keys", Some(&cookie)).await.body, "51");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_requests_memory_store() {
    overlapping_writes_keep_every_key(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_requests_file_store() {
    let dir = tempfile::tempdir().unwrap();
    overlapping_writes_keep_every_key(carafe::FileStore::new(dir.path()).unwrap()).await;
}

/// A logout racing a slow request: the slow request's save must not bring
/// the session back.
async fn logout_racing_a_slow_request(store: impl SessionStore + Clone) {
    let clock = MockClock::default();
    let loaded = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());
    let (l, g) = (loaded.clone(), go.clone());
    let app = Router::new()
        .route(
            "/slow",
            get(move |s: Session| {
                let (l, g) = (l.clone(), g.clone());
                async move {
                    l.notify_one();
                    g.notified().await;
                    s.insert("late", true).unwrap();
                    "slow done"
                }
            }),
        )
        .route(
            "/login",
            post(|s: Session| async move {
                s.insert("user", "ada").unwrap();
                "in"
            }),
        )
        .route(
            "/logout",
            post(|s: Session| async move {
                s.delete();
                "out"
            }),
        )
        .route("/len", get(|s: Session| async move { s.len().to_string() }))
        .layer(layer_for(store.clone(), &clock).auto(true).build().unwrap());
    let cookie = send(&app, "POST", "/login", None, None).await.cookie().unwrap();
    let slow = {
        let app = app.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move { req(&app, "/slow", Some(&cookie)).await })
    };
    loaded.notified().await;
    let out = send(&app, "POST", "/logout", Some(&cookie), None).await;
    assert!(out.removes_cookie());
    go.notify_one();
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    assert!(
        slow.removes_cookie(),
        "the slow request finds the session gone: logged out, the cookie removed, nothing created: {:?}",
        slow.set_cookies
    );
    assert_eq!(
        req(&app, "/len", Some(&cookie)).await.body,
        "0",
        "the session stays gone"
    );
}

#[tokio::test]
async fn logout_race_memory_store() {
    logout_racing_a_slow_request(MemoryStore::new()).await;
}

#[tokio::test]
async fn logout_race_file_store() {
    let dir = tempfile::tempdir().unwrap();
    logout_racing_a_slow_request(carafe::FileStore::new(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn file_store_never_leaves_its_directory_for_hostile_cookies() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let clock = MockClock::default();
    let app = auto_app(carafe::FileStore::new(&data).unwrap(), &clock);
    for value in [
        "../../x",
        "..%2F..%2Fx",
        "/etc/passwd",
        "....//....//x",
        "\\..\\..\\x",
    ] {
        let tag = "A".repeat(43);
        for cookie in [
            format!("__Host-carafe.sid={value}"),
            format!("__Host-carafe.sid={value}.{tag}"),
        ] {
            let r = req(&app, "/count", Some(&cookie)).await;
            assert_eq!(r.status, 200);
        }
    }
    // only the data dir exists in root, and it holds only well-formed record files
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["data"]);
    for entry in std::fs::read_dir(&data).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.strip_suffix(".json").unwrap();
        assert!(carafe::store::StoreKey::parse(stem).is_some(), "{name}");
    }
}

#[tokio::test]
async fn ids_never_appear_in_logs() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let clock = MockClock::default();
    let store = Probe::new(MemoryStore::new());
    let app = auto_app(store.clone(), &clock);
    let cookie = send(&app, "POST", "/login", None, None).await.cookie().unwrap();
    let id = cookie
        .split_once('=')
        .unwrap()
        .1
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    store.fail(true);
    req(&app, "/count", Some(&cookie)).await;
    store.fail(false);
    clock.advance(std::time::Duration::from_secs(30 * 24 * 60 * 60));
    req(&app, "/count", Some(&cookie)).await;
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("session store failed"),
        "the failure was logged: {logs}"
    );
    assert!(!logs.contains(&id), "a session id leaked into the logs");
}

#[tokio::test]
async fn an_oversized_session_is_a_clear_500_and_keeps_the_cookie_and_the_record() {
    let clock = MockClock::default();
    let store = MemoryStore::new().max_record_bytes(16 * 1024);
    let layer = layer_for(store.clone(), &clock)
        .auto(true)
        .secure(false)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/count",
            get(|session: Session| async move {
                let n = session.get::<u32>("count").unwrap().unwrap_or(0) + 1;
                session.insert("count", n).unwrap();
                format!("count: {n}")
            }),
        )
        .route(
            "/big",
            get(|session: Session| async move {
                session.insert("big", "x".repeat(64 * 1024)).unwrap();
                "big"
            }),
        )
        .layer(layer);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let r = req(&app, "/big", Some(&cookie)).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "session too large for the session store\n");
    assert!(
        r.set_cookies.is_empty(),
        "the cookie is neither replaced nor removed"
    );
    assert_eq!(store.len(), 1);
    assert_eq!(req(&app, "/count", Some(&cookie)).await.body, "count: 2");
    // A new session that is too large is not stored and gets no cookie.
    let r = req(&app, "/big", None).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.len(), 1);
}

/// ASVS 3.1.1: the session token is never taken from the URL. A valid
/// cookie value in the query string, under any likely name, is no session,
/// and nothing the layer writes puts the id in a URL or a body.
#[tokio::test]
async fn a_session_id_in_the_url_is_ignored() {
    let clock = MockClock::default();
    let app = auto_app(MemoryStore::new(), &clock);
    let first = req(&app, "/count", None).await;
    let value = first.cookie_value().unwrap();
    // control: as a cookie it loads
    let cookie = format!("{PLAIN_COOKIE}={value}");
    assert_eq!(req(&app, "/count", Some(&cookie)).await.body, "count: 2");
    for name in [PLAIN_COOKIE, COOKIE, "sid", "session", "session_id", "carafe"] {
        let r = req(&app, &format!("/count?{name}={value}"), None).await;
        assert_eq!(r.body, "count: 1", "?{name}= must not load the session");
        assert!(r.headers.get(http::header::LOCATION).is_none());
    }
    let id = value.split('.').next().unwrap();
    assert!(!first.body.contains(id));
}
