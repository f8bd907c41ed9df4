//! A session's own expiry ("remember me", a short-lived admin session) and
//! `touch()`, through HTTP on the memory, file and cookie stores, with an
//! injected clock.

mod support;

use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use carafe::{
    Clock, CookieExpiry, CookieStore, FileStore, IntoBackend, MemoryStore, MockClock, Session, SessionExpiry,
    SessionLayer,
};
use http::StatusCode;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn app(store: impl IntoBackend, clock: &MockClock, save_accessed_time: bool) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .clock(clock.clone())
        .idle_timeout(HOUR)
        .save_accessed_time(save_accessed_time)
        .build()
        .unwrap();
    Router::new()
        .route(
            "/login",
            post(|session: Session, body: String| async move {
                session.cycle_id();
                session.insert("user", "ada").unwrap();
                let expiry = match body.as_str() {
                    "remember" => SessionExpiry::remember_for(30 * DAY),
                    "admin" => SessionExpiry {
                        absolute_lifetime: Some(10 * MINUTE),
                        ..SessionExpiry::default()
                    },
                    "zero" => SessionExpiry::remember_for(Duration::ZERO),
                    _ => SessionExpiry::default(),
                };
                match session.set_expiry(expiry) {
                    Ok(()) => (StatusCode::OK, "in".to_owned()),
                    Err(err) => (StatusCode::BAD_REQUEST, err.to_string()),
                }
            }),
        )
        .route(
            "/forget-me",
            post(|session: Session| async move {
                session.set_expiry(SessionExpiry::default()).unwrap();
                "forgotten"
            }),
        )
        .route(
            "/relogin",
            post(|session: Session| async move {
                session.cycle_id();
                format!("{:?}", session.expiry().cookie)
            }),
        )
        .route(
            "/junk",
            post(|session: Session| async move {
                session.insert("carafe.expiry", "junk").unwrap();
                session.save();
                "junk"
            }),
        )
        .route(
            "/touch",
            post(|session: Session| async move {
                session.touch();
                "touched"
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
        .layer(layer)
}

/// Runs `test` on each store with a fresh clock.
async fn each_store<F, Fut>(save_accessed_time: bool, test: F)
where
    F: Fn(&'static str, Router, MockClock) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let clock = MockClock::default();
    test(
        "memory",
        app(MemoryStore::new(), &clock, save_accessed_time),
        clock,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::default();
    let store = FileStore::new(dir.path()).unwrap();
    test("file", app(store, &clock, save_accessed_time), clock).await;
    let clock = MockClock::default();
    test(
        "cookie",
        app(CookieStore::new(), &clock, save_accessed_time),
        clock,
    )
    .await;
}

async fn login(app: &Router, how: &str) -> Reply {
    let r = send(app, "POST", "/login", None, Some(how)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

/// The `Max-Age` of the session cookie the reply sets, if any.
fn max_age(reply: &Reply) -> Option<String> {
    reply
        .set_cookies
        .iter()
        .find(|c| c.starts_with(COOKIE))?
        .split(';')
        .map(str::trim)
        .find_map(|attr| attr.strip_prefix("Max-Age=").map(str::to_owned))
}

#[tokio::test]
async fn remember_me_outlives_the_layers_idle_timeout_and_the_browser() {
    each_store(true, |store, app, clock| async move {
        let r = login(&app, "remember").await;
        assert_eq!(
            max_age(&r).as_deref(),
            Some("2592000"),
            "{store}: {:?}",
            r.set_cookies
        );
        let cookie = r.cookie().unwrap();
        // The browser follows the login's redirect: the cookie is back, so
        // the session is confirmed (until then it lives unconfirmed_timeout).
        // (The cookie store rewrites its cookie with the longer expiry.)
        let back = req(&app, "/whoami", Some(&cookie)).await;
        assert_eq!(back.body, "ada");
        let cookie = back.cookie().unwrap_or(cookie);
        let plain = login(&app, "plain").await;
        assert_eq!(
            max_age(&plain),
            None,
            "{store}: the layer's browser-session cookie"
        );
        let plain = plain.cookie().unwrap();

        clock.advance(2 * HOUR);
        assert_eq!(
            req(&app, "/whoami", Some(&plain)).await.body,
            "anonymous",
            "{store}"
        );
        let r = req(&app, "/whoami", Some(&cookie)).await;
        assert_eq!(r.body, "ada", "{store}: remembered past the layer's hour");
        let cookie = r.cookie().unwrap_or(cookie);

        clock.advance(31 * DAY);
        let r = req(&app, "/whoami", Some(&cookie)).await;
        assert_eq!(r.body, "anonymous", "{store}: 30 days unused");
        assert!(r.removes_cookie(), "{store}: the stale cookie is cleared");
    })
    .await;
}

#[tokio::test]
async fn the_expiry_moves_with_cycle_id_and_default_goes_back_to_the_layers() {
    each_store(true, |store, app, _clock| async move {
        let cookie = login(&app, "remember").await.cookie().unwrap();
        let r = send(&app, "POST", "/relogin", Some(&cookie), None).await;
        assert_eq!(r.body, format!("{:?}", Some(CookieExpiry::MaxAge(30 * DAY))));
        assert_eq!(
            max_age(&r).as_deref(),
            Some("2592000"),
            "{store}: the new cookie persists too"
        );
        let cookie = r.cookie().unwrap();
        let r = send(&app, "POST", "/forget-me", Some(&cookie), None).await;
        assert_eq!(r.body, "forgotten");
        assert!(
            r.session_cookie().flatten().is_some(),
            "{store}: sent again: {:?}",
            r.set_cookies
        );
        assert_eq!(max_age(&r), None, "{store}: a browser-session cookie again");
    })
    .await;
}

#[tokio::test]
async fn one_short_lived_session_among_others() {
    each_store(true, |store, app, clock| async move {
        let admin = login(&app, "admin").await.cookie().unwrap();
        let user = login(&app, "plain").await.cookie().unwrap();
        for _ in 0..2 {
            clock.advance(6 * MINUTE);
            assert_eq!(req(&app, "/whoami", Some(&user)).await.body, "ada", "{store}");
        }
        assert_eq!(
            req(&app, "/whoami", Some(&admin)).await.body,
            "anonymous",
            "{store}: 12 minutes > the admin session's 10, however active"
        );
    })
    .await;
}

#[tokio::test]
async fn touch_extends_a_session_without_changing_it() {
    each_store(false, |store, app, clock| async move {
        let touched = login(&app, "plain").await.cookie().unwrap();
        let untouched = login(&app, "plain").await.cookie().unwrap();
        clock.advance(50 * MINUTE);
        // Reading does not refresh (save_accessed_time(false)): only touch.
        assert_eq!(req(&app, "/whoami", Some(&untouched)).await.body, "ada");
        let r = send(&app, "POST", "/touch", Some(&touched), None).await;
        assert_eq!(r.body, "touched");
        let touched = r.cookie().unwrap_or(touched);
        clock.advance(50 * MINUTE);
        assert_eq!(
            req(&app, "/whoami", Some(&untouched)).await.body,
            "anonymous",
            "{store}"
        );
        assert_eq!(
            req(&app, "/whoami", Some(&touched)).await.body,
            "ada",
            "{store}: touched 50 min ago"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_expiries_get_a_clear_answer() {
    each_store(true, |store, app, clock| async move {
        let r = send(&app, "POST", "/login", None, Some("zero")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body, "a session's expiry durations must be positive");
        // Junk under the key is not an expiry: the layer's rules apply.
        let cookie = login(&app, "remember").await.cookie().unwrap();
        let r = send(&app, "POST", "/junk", Some(&cookie), None).await;
        assert_eq!(r.status, StatusCode::OK);
        let cookie = r.cookie().unwrap_or(cookie);
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "ada", "{store}");
        clock.advance(2 * HOUR);
        assert_eq!(
            req(&app, "/whoami", Some(&cookie)).await.body,
            "anonymous",
            "{store}"
        );
    })
    .await;
}

/// A flood of cookieless requests, each creating a session, cannot fill the
/// store for the idle timeout: until its cookie comes back, a session lives
/// for `unconfirmed_timeout` only; the first request that presents it gives
/// it the full idle timeout.
#[tokio::test]
async fn a_session_whose_cookie_never_comes_back_expires_soon() {
    use carafe::SessionStore;
    let store = std::sync::Arc::new(MemoryStore::new());
    let clock = MockClock::default();
    let layer = SessionLayer::builder(store.clone())
        .secret(SECRET)
        .clock(clock.clone())
        .idle_timeout(14 * DAY)
        .unconfirmed_timeout(30 * MINUTE)
        .auto(true)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|session: Session| async move {
                let n = session.get::<u32>("n").unwrap().unwrap_or(0) + 1;
                session.insert("n", n).unwrap();
                n.to_string()
            }),
        )
        .layer(layer);
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(req(&app, "/", None).await.cookie().unwrap());
    }
    let visitor = req(&app, "/", None).await.cookie().unwrap();
    clock.advance(MINUTE);
    let r = req(&app, "/", Some(&visitor)).await;
    assert_eq!(r.body, "2", "the cookie came back");
    clock.advance(31 * MINUTE);
    let reaped = store.delete_expired(clock.now()).await.unwrap();
    assert_eq!(reaped, 20, "the flood's sessions are gone after 30 minutes");
    for cookie in &flood[..3] {
        assert_eq!(req(&app, "/", Some(cookie)).await.body, "1", "a fresh session");
    }
    clock.advance(2 * DAY);
    assert_eq!(
        req(&app, "/", Some(&visitor)).await.body,
        "3",
        "the visitor's confirmed session has the full idle timeout"
    );
}
