//! The request lifecycle through HTTP (tower `oneshot`), on the memory and
//! the file store: a deletion is final, emptying then cycling logs out,
//! `cycle_id()` racing a logout never resurrects, a panic does not cancel a
//! logout, another site cannot log a visitor out, caches, cookie parsing,
//! stale cookies, logs, and typed views an application can use.

mod support;

use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::Router;
use carafe::{MemoryStore, MockClock, Session, SessionLayer, SessionStore, Typed};
use http::StatusCode;
use support::*;

#[derive(carafe::Session, Debug)]
#[session(auto, namespace = "auth")]
struct Auth {
    user: String,
    #[session(default)]
    hits: u32,
}

#[derive(carafe::Session, Debug, Default)]
#[session(default, namespace = "cart")]
struct Cart {
    items: Vec<String>,
}

/// The shop: login writes a whole `Auth` and cycles the id; `/whoami` is
/// read-only ("maybe logged in"); the rest are the ways to log out and the
/// mistakes developers made on the way.
fn shop(layer: SessionLayer) -> Router {
    routes().layer(layer)
}

/// The shop's routes without the layer: a test adds its own routes, then
/// the layer (`Router::layer` wraps only the routes added before it).
fn routes() -> Router {
    Router::new()
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
            "/whoami",
            get(|auth: Option<Typed<Auth>>| async move {
                auth.map_or_else(|| "anonymous".to_owned(), |a| format!("{} {}", a.user, a.hits))
            }),
        )
        .route(
            "/hit-then-delete",
            post(|mut auth: Typed<Auth>, session: Session| async move {
                auth.hits += 1;
                session.delete();
                "out"
            }),
        )
        .route(
            "/flush-remove-hit",
            post(|mut auth: Typed<Auth>, session: Session| async move {
                auth.hits += 1;
                auth.flush();
                session.remove("auth.user");
                session.save();
                auth.hits += 1;
                "done"
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move { session.keys().join(",") }),
        )
        .route(
            "/clear-cycle",
            post(|session: Session| async move {
                session.clear();
                session.cycle_id();
                "out"
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.delete();
                "out"
            }),
        )
        .route(
            "/delete-then-panic",
            post(|session: Session| async move {
                session.delete();
                if session.is_empty() {
                    panic!("the handler fails after logging out");
                }
                "unreachable"
            }),
        )
        .route(
            "/invalidate-then-flash",
            post(|session: Session| async move {
                session.invalidate();
                session.insert("flash", "logged out").unwrap();
                session.save();
                "out"
            }),
        )
        .route(
            "/delete-then-insert",
            post(|session: Session| async move {
                session.delete();
                match session.insert("flash", "x") {
                    Err(carafe::SessionError::Deleted) => "refused",
                    _ => "accepted",
                }
            }),
        )
        .route(
            "/public",
            get(|session: Session| async move {
                session.insert("seen", true).unwrap();
                session.save();
                ([(http::header::CACHE_CONTROL, "public, max-age=600")], "page")
            }),
        )
        .route(
            "/two-views",
            post(|mut a: Typed<Cart>, mut b: Typed<Cart>| async move {
                a.items.push("tea".into());
                a.save();
                drop(a);
                b.items.push("cake".into());
                b.save();
                "ok"
            }),
        )
        .route(
            "/cart",
            get(|cart: Typed<Cart>| async move { cart.items.join(",") }),
        )
        .route(
            "/cart-unsaved",
            post(|mut cart: Typed<Cart>, mut auth: Typed<Auth>| async move {
                cart.items.push("jam".into());
                auth.hits += 1;
                "not saved"
            }),
        )
        .route("/health", get(|| async { "ok" }))
}

fn layer(store: impl SessionStore) -> carafe::SessionLayerBuilder {
    SessionLayer::builder(store)
        .secret(SECRET)
        .clock(MockClock::default())
}

async fn login(app: &Router) -> String {
    let r = send(app, "POST", "/login", None, None).await;
    assert_eq!(r.body, "in");
    let cookie = r.cookie().expect("login sets a cookie");
    assert_eq!(req(app, "/whoami", Some(&cookie)).await.body, "ada 0");
    cookie
}

/// Every store the lifecycle tests run on.
async fn each_store<F, Fut>(test: F)
where
    F: Fn(Arc<dyn SessionStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    test(Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    test(Arc::new(carafe::FileStore::new(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn a_typed_write_before_delete_does_not_log_back_in() {
    each_store(|store| async move {
        let app = shop(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let r = send(&app, "POST", "/hit-then-delete", Some(&cookie), None).await;
        assert!(r.removes_cookie(), "{:?}", r.set_cookies);
        assert_eq!(
            r.session_cookie(),
            Some(None),
            "no new live cookie: {:?}",
            r.set_cookies
        );
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    })
    .await;
}

#[tokio::test]
async fn a_view_writes_only_the_fields_it_changed() {
    each_store(|store| async move {
        let app = shop(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let r = send(&app, "POST", "/flush-remove-hit", Some(&cookie), None).await;
        assert_eq!(r.status, StatusCode::OK);
        // `auth.user` stays removed: the view did not change it.
        assert_eq!(req(&app, "/keys", Some(&cookie)).await.body, "auth.hits");
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    })
    .await;
}

#[tokio::test]
async fn clear_then_cycle_logs_out() {
    each_store(|store| async move {
        let app = shop(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let r = send(&app, "POST", "/clear-cycle", Some(&cookie), None).await;
        assert!(r.removes_cookie(), "the browser is told: {:?}", r.set_cookies);
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
        assert_eq!(req(&app, "/keys", Some(&cookie)).await.body, "");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_cycling_while_a_logout_runs_never_resurrects() {
    for store in [
        Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>,
        Arc::new(carafe::FileStore::new(tempfile::tempdir().unwrap().keep()).unwrap()),
    ] {
        let loaded = Arc::new(tokio::sync::Notify::new());
        let go = Arc::new(tokio::sync::Notify::new());
        let (l, g) = (loaded.clone(), go.clone());
        let app = routes()
            .route(
                "/relogin",
                post(move |session: Session| {
                    let (l, g) = (l.clone(), g.clone());
                    async move {
                        l.notify_one();
                        g.notified().await;
                        session.insert("auth.admin", true).unwrap();
                        session.cycle_id();
                        "again"
                    }
                }),
            )
            .layer(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let relogin = {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { send(&app, "POST", "/relogin", Some(&cookie), None).await })
        };
        // A guard, not a wait for time to pass: a handler that never runs
        // (a route outside the layer) fails the test instead of hanging it.
        tokio::time::timeout(std::time::Duration::from_secs(30), loaded.notified())
            .await
            .expect("/relogin ran and loaded its session");
        assert!(send(&app, "POST", "/logout", Some(&cookie), None)
            .await
            .removes_cookie());
        go.notify_one();
        let relogin = relogin.await.unwrap();
        assert!(relogin.removes_cookie(), "logged out: {:?}", relogin.set_cookies);
        assert_eq!(
            relogin.session_cookie(),
            Some(None),
            "no new session: {:?}",
            relogin.set_cookies
        );
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    }
}

#[tokio::test]
async fn a_panic_after_delete_still_logs_out() {
    each_store(|store| async move {
        // A catch-panic layer outside the session layer (the usual place).
        let app = shop(layer(store.clone()).build().unwrap())
            .layer(tower_http::catch_panic::CatchPanicLayer::new());
        let cookie = login(&app).await;
        let r = send(&app, "POST", "/delete-then-panic", Some(&cookie), None).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");

        // No catch-panic layer at all: the panic reaches the server's task.
        let app = shop(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let task = {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { send(&app, "POST", "/delete-then-panic", Some(&cookie), None).await })
        };
        assert!(task.await.expect_err("the panic goes on").is_panic());
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    })
    .await;
}

#[tokio::test]
async fn another_site_cannot_log_a_visitor_out() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    // A cross-site form POST carries no cookie (SameSite=Lax).
    let r = send(&app, "POST", "/logout", None, None).await;
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    let r = send(&app, "POST", "/clear-cycle", None, None).await;
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
}

#[tokio::test]
async fn caches_are_told_the_page_depends_on_the_cookie() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    let cookie = login(&app).await;
    let r = req(&app, "/whoami", Some(&cookie)).await;
    assert!(r.set_cookies.is_empty());
    assert_eq!(r.headers["vary"], "Cookie", "a read-only page varies too");
    assert!(
        req(&app, "/health", Some(&cookie))
            .await
            .headers
            .get("vary")
            .is_none(),
        "an untouched route is left alone"
    );
    let r = req(&app, "/public", None).await;
    assert!(r.cookie().is_some());
    assert_eq!(
        r.headers["cache-control"], "private, max-age=600",
        "never shared-cacheable"
    );
}

#[tokio::test]
async fn an_accented_cookie_does_not_hide_the_session_cookie() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    let cookie = login(&app).await;
    let header =
        http::HeaderValue::from_bytes(format!("theme=caf\u{e9}; {cookie}; x=\u{fc}").as_bytes()).unwrap();
    let request = http::Request::get("/whoami")
        .header(http::header::COOKIE, header)
        .body(axum::body::Body::empty())
        .unwrap();
    let r = reply(tower::ServiceExt::oneshot(app.clone(), request).await.unwrap()).await;
    assert_eq!(r.body, "ada 0");
}

#[tokio::test]
async fn thousands_of_candidates_are_not_all_verified() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    let cookie = login(&app).await;
    let junk: Vec<String> = (0..4000).map(|i| format!("{COOKIE}=junk{i}")).collect();
    // The real cookie first: found. After thousands of others: not looked at.
    let first = format!("{cookie}; {}", junk.join("; "));
    assert_eq!(req(&app, "/whoami", Some(&first)).await.body, "ada 0");
    let last = format!("{}; {cookie}", junk.join("; "));
    assert_eq!(req(&app, "/whoami", Some(&last)).await.body, "anonymous");
}

#[tokio::test]
async fn a_cookie_signed_with_an_old_secret_is_re_signed_on_the_next_write() {
    let store = MemoryStore::new();
    let old = b"the old secret, at least thirty-two bytes long";
    let before = shop(SessionLayer::builder(store.clone()).secret(old).build().unwrap());
    let cookie = login(&before).await;
    let rotated = shop(
        SessionLayer::builder(store.clone())
            .secret(SECRET)
            .old_secret(old)
            .build()
            .unwrap(),
    );
    let r = req(&rotated, "/whoami", Some(&cookie)).await;
    assert_eq!(r.body, "ada 0");
    assert!(r.set_cookies.is_empty(), "a read does not rewrite the cookie");
    let r = send(&rotated, "POST", "/two-views", Some(&cookie), None).await;
    let resigned = r.cookie().expect("the write re-signs the cookie");
    assert_ne!(resigned, cookie);
    let retired = shop(SessionLayer::builder(store).secret(SECRET).build().unwrap());
    assert_eq!(
        req(&retired, "/whoami", Some(&resigned)).await.body,
        "ada 0",
        "the old secret can go"
    );
    assert_eq!(req(&retired, "/whoami", Some(&cookie)).await.body, "anonymous");
}

#[tokio::test]
async fn a_stale_cookie_is_cleared() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    for stale in [format!("{COOKIE}=forged"), {
        // A well-signed cookie whose session is gone.
        let cookie = login(&app).await;
        send(&app, "POST", "/logout", Some(&cookie), None).await;
        cookie
    }] {
        let r = req(&app, "/whoami", Some(&stale)).await;
        assert_eq!(r.body, "anonymous");
        assert!(r.removes_cookie(), "{stale}: {:?}", r.set_cookies);
    }
    // Not on a route that never looks at the session.
    assert!(req(&app, "/health", Some(&format!("{COOKIE}=forged")))
        .await
        .set_cookies
        .is_empty());
}

/// Captures what `tracing` prints while `f` runs (current-thread runtime).
async fn logs<F: std::future::Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    f.await;
    drop(guard);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn logs_never_hold_cookie_values_or_session_values() {
    let app = routes()
        .route(
            "/card",
            post(|session: Session| async move {
                session.insert("auth.user", "card=4111 1111 1111 1111").unwrap();
                session.insert("auth.hits", "card=4111 1111 1111 1111").unwrap();
                session.save();
                "stored"
            }),
        )
        .layer(layer(MemoryStore::new()).build().unwrap());
    let cookie = login(&app).await;
    let forged = format!("{COOKIE}=secret-forged-value");
    let printed = logs(async {
        assert_eq!(req(&app, "/whoami", Some(&forged)).await.body, "anonymous");
        send(&app, "POST", "/card", Some(&cookie), None).await;
        // `hits` has a default: a warning; `user` is a String: it loads.
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.status, StatusCode::OK);
        let r = req(&app, "/cart", Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await;
    assert!(printed.contains("failed verification"), "{printed}");
    assert!(printed.contains("auth.hits"), "the key is named: {printed}");
    assert!(!printed.contains("secret-forged-value"), "{printed}");
    assert!(!printed.contains("4111"), "{printed}");
    assert!(!printed.contains(cookie.split('=').nth(1).unwrap()), "{printed}");
}

#[tokio::test]
async fn maybe_logged_in_is_none_without_an_error_and_bad_data_is_a_500() {
    let app = routes()
        .route(
            "/corrupt",
            post(|session: Session| async move {
                session.insert("auth.user", 42).unwrap();
                session.save();
                "corrupted"
            }),
        )
        .layer(layer(MemoryStore::new()).build().unwrap());
    let printed = logs(async {
        assert_eq!(req(&app, "/whoami", None).await.body, "anonymous");
    })
    .await;
    assert!(
        !printed.contains("ERROR") && !printed.contains("WARN"),
        "{printed}"
    );
    let cookie = login(&app).await;
    send(&app, "POST", "/corrupt", Some(&cookie), None).await;
    let printed = logs(async {
        let r = req(&app, "/whoami", Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    })
    .await;
    assert!(
        printed.contains("ERROR") && printed.contains("auth.user"),
        "{printed}"
    );
}

#[tokio::test]
async fn two_views_of_one_struct_merge() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    let r = send(&app, "POST", "/two-views", None, None).await;
    let cookie = r.cookie().unwrap();
    // Both pushes kept? `b` loaded before `a` wrote, so `b` adds to the
    // list it saw: its `items` replaces `a`'s. Field by field, the last
    // writer of a field wins; no write is silently lost in another field.
    assert_eq!(req(&app, "/cart", Some(&cookie)).await.body, "cake");
}

#[tokio::test]
async fn unsaved_typed_changes_are_named_in_a_warning_and_auto_does_not_save_them() {
    let app = shop(layer(MemoryStore::new()).build().unwrap());
    let cookie = login(&app).await;
    let printed = logs(async {
        send(&app, "POST", "/cart-unsaved", Some(&cookie), None).await;
    })
    .await;
    assert!(
        printed.contains("WARN") && printed.contains("Cart") && printed.contains("cart.items"),
        "{printed}"
    );
    // `Auth` is auto: its change is saved; `Cart` is not, and the auto save
    // does not carry it along.
    assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "ada 1");
    assert_eq!(req(&app, "/cart", Some(&cookie)).await.body, "");
}

#[tokio::test]
async fn invalidate_goes_on_with_a_new_session_delete_ends_it() {
    each_store(|store| async move {
        let app =
            routes()
                .route(
                    "/flash",
                    get(|session: Session| async move {
                        session.get::<String>("flash").unwrap().unwrap_or_default()
                    }),
                )
                .layer(layer(store).build().unwrap());
        let cookie = login(&app).await;
        let r = send(&app, "POST", "/invalidate-then-flash", Some(&cookie), None).await;
        let fresh = r.cookie().expect("the new session is saved and sent");
        assert_ne!(fresh, cookie);
        assert_eq!(req(&app, "/flash", Some(&fresh)).await.body, "logged out");
        assert_eq!(req(&app, "/whoami", Some(&fresh)).await.body, "anonymous");
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");

        let cookie = login(&app).await;
        let r = send(&app, "POST", "/delete-then-insert", Some(&cookie), None).await;
        assert_eq!(r.body, "refused");
        assert!(r.removes_cookie());
        assert_eq!(r.session_cookie(), Some(None));
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
    })
    .await;
}
