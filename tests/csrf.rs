//! CSRF protection through HTTP (tower `oneshot`), on the memory and the
//! file store: forms and headers carry a masked token of the session, login
//! CSRF is stopped for anonymous visitors, cross-site and foreign-origin
//! requests are refused, and bad tokens get a clear 403, never a 500.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Form;
use axum::routing::{get, post};
use axum::Router;
use carafe::csrf::{CsrfLayer, CsrfToken};
use carafe::{MemoryStore, Session, SessionLayer, SessionStore};
use http::{header, Request, StatusCode};
use support::*;
use tower::ServiceExt;

fn app(store: Arc<dyn SessionStore>) -> Router {
    Router::new()
        .route(
            "/login",
            get(|token: CsrfToken| async move { token.as_str().to_owned() }).post(
                |session: Session, Form(form): Form<Vec<(String, String)>>| async move {
                    session.cycle_id();
                    session.insert("user", "ada").unwrap();
                    session.save();
                    // The handler still gets the whole form.
                    form.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(",")
                },
            ),
        )
        .route(
            "/login-rotating",
            post(|session: Session| async move {
                session.cycle_id();
                carafe::csrf::rotate(&session).unwrap();
                "rotated"
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
            "/whoami",
            get(|session: Session| async move { session.get::<String>("user").unwrap().unwrap_or_default() }),
        )
        .layer(
            CsrfLayer::new()
                .trusted_origin("https://pay.example")
                .form_limit(4096),
        )
        .layer(
            SessionLayer::builder(store)
                .secret(SECRET)
                .clock(carafe::MockClock::default())
                .build()
                .unwrap(),
        )
}

async fn each_store<F, Fut>(test: F)
where
    F: Fn(Router) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    test(app(Arc::new(MemoryStore::new()))).await;
    let dir = tempfile::tempdir().unwrap();
    test(app(Arc::new(carafe::FileStore::new(dir.path()).unwrap()))).await;
}

/// A request as a browser would send it to the shop at `shop.example`.
async fn call(app: &Router, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "shop.example");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    reply(response).await
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// The login form: a token and the anonymous session's cookie.
async fn form(app: &Router) -> (String, String) {
    let r = call(app, "GET", "/login", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    (
        r.body.clone(),
        r.cookie().expect("an anonymous session holds the secret"),
    )
}

#[tokio::test]
async fn a_form_with_its_token_goes_through_and_the_handler_sees_the_form() {
    each_store(|app| async move {
        let (token, cookie) = form(&app).await;
        let body = format!("user=ada&csrf_token={token}&next=%2F");
        let r = call(&app, "POST", "/login", &[FORM, ("cookie", &cookie)], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body, "user,csrf_token,next");
        let cookie = r.cookie().unwrap();
        assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "ada");
    })
    .await;
}

#[tokio::test]
async fn login_csrf_is_refused() {
    each_store(|app| async move {
        // The attacker's own token and cookie are no use in the visitor's
        // browser: the visitor has no session (or another one).
        let (attackers_token, _) = form(&app).await;
        let body = format!("user=mallory&csrf_token={attackers_token}");
        let r = call(&app, "POST", "/login", &[FORM], &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body, "CSRF check failed: token invalid\n");
        let (_, visitors_cookie) = form(&app).await;
        let r = call(
            &app,
            "POST",
            "/login",
            &[FORM, ("cookie", &visitors_cookie)],
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");
        assert_eq!(req(&app, "/whoami", Some(&visitors_cookie)).await.body, "");
    })
    .await;
}

#[tokio::test]
async fn the_browser_saying_cross_site_is_refused_even_with_a_token() {
    each_store(|app| async move {
        let (token, cookie) = form(&app).await;
        let body = format!("csrf_token={token}");
        for headers in [
            vec![("sec-fetch-site", "cross-site")],
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "https://blog.shop.example"),
            ],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
        ] {
            let mut all = vec![FORM, ("cookie", cookie.as_str())];
            all.extend(headers.iter().copied());
            let r = call(&app, "POST", "/login", &all, &body).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        }
        // A trusted origin with a token passes; the same origin too (each
        // login cycles the id: the next request sends the new cookie).
        let mut cookie = cookie;
        for origin in ["https://pay.example", "https://shop.example"] {
            let r = call(
                &app,
                "POST",
                "/login",
                &[
                    FORM,
                    ("cookie", &cookie),
                    ("origin", origin),
                    ("sec-fetch-site", "same-origin"),
                ],
                &body,
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{origin}: {}", r.body);
            cookie = r.cookie().unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_header_token_works_and_each_page_gets_another_mask() {
    each_store(|app| async move {
        let (first, cookie) = form(&app).await;
        let second = call(&app, "GET", "/login", &[("cookie", &cookie)], "").await.body;
        assert_ne!(first, second, "masked per response");
        // Both masks are tokens of the session (a form and a script).
        let r = call(
            &app,
            "POST",
            "/login",
            &[FORM, ("cookie", &cookie), ("x-csrf-token", &first)],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let cookie = r.cookie().unwrap();
        let r = call(
            &app,
            "POST",
            "/logout",
            &[("cookie", &cookie), ("x-csrf-token", &second)],
            "",
        )
        .await;
        assert_eq!(r.body, "out");
        let r = call(
            &app,
            "POST",
            "/logout",
            &[("cookie", &cookie), ("x-csrf-token", &second)],
            "",
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "the session and its secret are gone"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_tokens_get_a_clear_403_never_a_500() {
    each_store(|app| async move {
        let (token, cookie) = form(&app).await;
        let mut flipped = token.clone().into_bytes();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        type Headers<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(Headers<'_>, String, &str)> = vec![
            (vec![FORM], String::new(), "token missing"),
            (vec![FORM], "user=ada".into(), "token missing"),
            (vec![], format!("csrf_token={token}"), "token missing"),
            (vec![FORM], format!("csrf_token={flipped}"), "token invalid"),
            (vec![FORM], "csrf_token=%FF%FE".into(), "token invalid"),
            (
                vec![FORM],
                format!("csrf_token={}", "A".repeat(5000)),
                "form too large",
            ),
            (
                vec![("x-csrf-token", "not a token")],
                String::new(),
                "token invalid",
            ),
        ];
        for (headers, body, reason) in cases {
            let mut all = vec![("cookie", cookie.as_str())];
            all.extend(headers.iter().copied());
            let r = call(&app, "POST", "/login", &all, &body).await;
            assert_eq!(
                r.body,
                format!("CSRF check failed: {reason}\n"),
                "{headers:?} {body:?}"
            );
            let want = if reason == "form too large" {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(r.status, want);
        }
        let r = call(
            &app,
            "POST",
            "/login",
            &[FORM, ("cookie", &cookie)],
            &format!("csrf_token={token}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "the real token still works: {}", r.body);
    })
    .await;
}

#[tokio::test]
async fn the_secret_survives_cycle_id_and_rotate_changes_it() {
    each_store(|app| async move {
        let (token, cookie) = form(&app).await;
        let body = format!("csrf_token={token}");
        let r = call(&app, "POST", "/login", &[FORM, ("cookie", &cookie)], &body).await;
        let cookie = r.cookie().expect("cycled");
        // A form opened before the login (in another tab) still posts.
        let r = call(&app, "POST", "/login", &[FORM, ("cookie", &cookie)], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let cookie = r.cookie().unwrap();
        let r = call(
            &app,
            "POST",
            "/login-rotating",
            &[("cookie", &cookie), ("x-csrf-token", &token)],
            "",
        )
        .await;
        assert_eq!(r.body, "rotated");
        let cookie = r.cookie().unwrap();
        let r = call(&app, "POST", "/login", &[FORM, ("cookie", &cookie)], &body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "rotated: old tokens stop working"
        );
        let fresh = call(&app, "GET", "/login", &[("cookie", &cookie)], "").await.body;
        let r = call(
            &app,
            "POST",
            "/login",
            &[FORM, ("cookie", &cookie)],
            &format!("csrf_token={fresh}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn safe_methods_pass_without_a_token_and_make_no_session() {
    each_store(|app| async move {
        let r = call(&app, "GET", "/whoami", &[("sec-fetch-site", "cross-site")], "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    })
    .await;
}
