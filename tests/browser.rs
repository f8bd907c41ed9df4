//! The quickstart in a real browser: headless Chromium driven through
//! WebDriver (chromedriver, with fantoccini), on loopback only.
//!
//! Two host names are mapped to 127.0.0.1 by Chromium's
//! `--host-resolver-rules` (every other name fails to resolve, so nothing
//! leaves the machine): `carafe.test`, where the quickstart is served, and
//! `attacker.test`, a second site whose pages post a form to the
//! quickstart's `/logout`, link to it and frame it. A recording layer
//! around each application keeps the requests as the server saw them, so a
//! claim is checked from both sides: the browser's cookie jar, page text and
//! `document.cookie`, and the requests and the store.
//!
//! Without `chromedriver` and `chromium` on the `PATH` (or at
//! `CARAFE_CHROMEDRIVER` and `CARAFE_CHROMIUM`), each test prints a
//! `SKIPPED: ...` line and passes, unless `CARAFE_REQUIRE_BROWSER=1`, where
//! it fails (`.ci/run` sets it). The tests share one browser at a time (a
//! lock), each within [`TEST_TIME`].

mod support;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use carafe::{FileStore, SameSite, SessionLayer};
use fantoccini::{Client, Locator};
use support::{serve, COOKIE, PLAIN_COOKIE, SECRET};

use support::browser::{
    jar_value, launch_or_skip, save_screenshot, wait_for_cookie, wait_until, wait_until_some, Browser,
    APP_HOST, ATTACKER_HOST, ONE_BROWSER, WAIT,
};

/// Each test's whole run, browser start included (about 3 s here).
const TEST_TIME: Duration = Duration::from_secs(40);
/// All the tests in this file, from the first one's start (about 20 s).
const RUN_TIME: Duration = Duration::from_secs(100);

// --- the tests ---------------------------------------------------------

/// The counter goes on across reloads with one cookie; login replaces the
/// cookie in the browser's jar (a new id, the old one dead in the store);
/// logout removes it from the jar and the record from the store.
#[tokio::test]
async fn the_counter_survives_reloads_and_login_and_logout_change_the_jar() {
    run(|browser| async move {
        let app = App::quickstart().await;
        let c = browser.client();

        c.goto(&app.url("/")).await.unwrap();
        wait_for_text(c, "count: 1").await;
        let first = wait_for_cookie(c, PLAIN_COOKIE).await;
        for n in 2..=3 {
            c.refresh().await.unwrap();
            wait_for_text(c, &format!("count: {n}")).await;
        }
        assert_eq!(
            jar_value(c, PLAIN_COOKIE).await.as_deref(),
            Some(first.as_str()),
            "one cookie across reloads"
        );
        let stored = app.stored(&first).await.expect("the session is in the store");
        assert_eq!(stored.get("count"), Some(&serde_json::json!(3)));
        let sent: Vec<_> = app
            .log
            .all()
            .iter()
            .filter(|r| r.path == "/")
            .map(|r| r.session_cookie(PLAIN_COOKIE))
            .collect();
        assert_eq!(
            sent,
            [None, Some(first.clone()), Some(first.clone())],
            "the first visit had no cookie, every reload sent it"
        );

        submit_form(c, "/login", &[("user", "ada")]).await;
        wait_for_text(c, "logged in as ada").await;
        let logged_in = wait_for_cookie(c, PLAIN_COOKIE).await;
        assert_ne!(logged_in, first, "login changes the cookie in the jar");
        assert_eq!(app.stored(&first).await, None, "the old id is dead");
        let stored = app
            .stored(&logged_in)
            .await
            .expect("the new id names the session");
        assert_eq!(stored.get("user"), Some(&serde_json::json!("ada")));
        assert_eq!(
            stored.get("count"),
            Some(&serde_json::json!(3)),
            "data kept across login"
        );
        c.goto(&app.url("/whoami")).await.unwrap();
        wait_for_text(c, "ada").await;

        submit_form(c, "/logout", &[]).await;
        wait_for_text(c, "logged out").await;
        wait_until("logout removes the cookie from the jar", || async {
            jar_value(c, PLAIN_COOKIE).await.is_none()
        })
        .await;
        assert_eq!(app.stored(&logged_in).await, None, "logout deletes the record");
        c.goto(&app.url("/whoami")).await.unwrap();
        wait_for_text(c, "anonymous").await;
    })
    .await;
}

/// `HttpOnly` in a browser: the session cookie is in the jar, but
/// `document.cookie` does not show it (a script-set cookie beside it is
/// shown, so the check can see cookies), and script cannot overwrite it.
#[tokio::test]
async fn the_session_cookie_is_invisible_to_document_cookie() {
    run(|browser| async move {
        let app = App::quickstart().await;
        let c = browser.client();
        c.goto(&app.url("/")).await.unwrap();
        wait_for_text(c, "count: 1").await;
        let value = wait_for_cookie(c, PLAIN_COOKIE).await;

        let seen = c
            .execute(
                "document.cookie = 'visible=yes; path=/'; \
                 document.cookie = arguments[0] + '=forged; path=/'; \
                 return document.cookie;",
                vec![serde_json::json!(PLAIN_COOKIE)],
            )
            .await
            .unwrap();
        assert_eq!(
            seen,
            serde_json::json!("visible=yes"),
            "script sees its own cookie and not the session's"
        );
        let jar = c.get_all_cookies().await.unwrap();
        let session = jar
            .iter()
            .find(|k| k.name() == PLAIN_COOKIE)
            .expect("the session cookie is in the jar");
        assert_eq!(session.value(), value, "script could not overwrite it");
        assert_eq!(session.http_only(), Some(true));
        let visible = jar
            .iter()
            .find(|k| k.name() == "visible")
            .expect("the script's cookie");
        assert_ne!(visible.http_only(), Some(true));

        c.refresh().await.unwrap();
        wait_for_text(c, "count: 2").await;
    })
    .await;
}

/// `SameSite=Lax` against CSRF: a form on another site that posts itself
/// to `/logout` reaches the handler without the cookie, so the visitor's
/// session is still in the store and the cookie still in the jar.
#[tokio::test]
async fn a_cross_site_post_to_logout_neither_reaches_the_session_nor_removes_the_cookie() {
    run(|browser| async move {
        let app = App::quickstart().await;
        let attacker = Attacker::serve(&app, None).await;
        let c = browser.client();
        let cookie = log_in(c, &app, "ada").await;

        let before = app.log.len();
        c.goto(&attacker.url("/post-logout")).await.unwrap();
        wait_for_text(c, "logged out").await;
        let posts: Vec<_> = app
            .log
            .since(before)
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/logout")
            .collect();
        assert_eq!(posts.len(), 1, "the form was posted: {posts:?}");
        assert_eq!(
            posts[0].origin.as_deref(),
            Some(attacker.origin.as_str()),
            "from the other site"
        );
        assert_eq!(
            posts[0].session_cookie(PLAIN_COOKIE),
            None,
            "without the session cookie"
        );

        let stored = app.stored(&cookie).await.expect("the session survived");
        assert_eq!(stored.get("user"), Some(&serde_json::json!("ada")));
        assert_eq!(
            jar_value(c, PLAIN_COOKIE).await.as_deref(),
            Some(cookie.as_str()),
            "the cookie is still in the jar"
        );
        c.goto(&app.url("/whoami")).await.unwrap();
        wait_for_text(c, "ada").await;
    })
    .await;
}

/// `SameSite=Lax` for reads: following a link from another site (a
/// top-level `GET`) carries the cookie; the same page in another site's
/// iframe is loaded without it. The control: beside it, the same app with
/// a `SameSite=None` cookie, framed by the same page, gets its cookie, so
/// the browser does send cookies to other sites' frames and it is `Lax`
/// that keeps the session's out. Saves a screenshot of the framing page to
/// `target/browser/cross-site-iframe.png`.
#[tokio::test]
async fn a_cross_site_link_carries_the_cookie_and_a_cross_site_iframe_does_not() {
    run(|browser| async move {
        let app = App::quickstart().await;
        let control = App::same_site_none().await;
        let attacker = Attacker::serve(&app, Some(&control)).await;
        let c = browser.client();
        let control_cookie = log_in(c, &control, "grace").await;
        let cookie = log_in(c, &app, "ada").await;

        c.goto(&attacker.url("/link")).await.unwrap();
        let before = app.log.len();
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("go"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(c, "ada").await;
        let followed = app
            .log
            .last_since(before, "/whoami")
            .expect("the link was followed");
        assert_eq!(
            followed.referer.as_deref(),
            Some(format!("{}/", attacker.origin).as_str()),
            "from the other site"
        );
        assert_eq!(
            followed.session_cookie(PLAIN_COOKIE).as_deref(),
            Some(cookie.as_str()),
            "a top-level GET carries the cookie"
        );

        let (before, control_before) = (app.log.len(), control.log.len());
        c.goto(&attacker.url("/frame")).await.unwrap();
        let framed = wait_until_some("the iframe's request", || async {
            app.log.last_since(before, "/whoami")
        })
        .await;
        let control_framed = wait_until_some("the control iframe's request", || async {
            control.log.last_since(control_before, "/whoami")
        })
        .await;
        assert_eq!(
            control_framed.session_cookie(control.cookie_name).as_deref(),
            Some(control_cookie.as_str()),
            "the control: a SameSite=None cookie goes to the other site's frame"
        );
        assert_eq!(
            framed.referer.as_deref(),
            Some(format!("{}/", attacker.origin).as_str()),
            "from the other site"
        );
        assert_eq!(
            framed.session_cookie(PLAIN_COOKIE),
            None,
            "an iframe's request has no cookie"
        );
        c.enter_frame(0).await.unwrap();
        wait_for_text(c, "anonymous").await;
        c.enter_parent_frame().await.unwrap();
        c.enter_frame(1).await.unwrap();
        wait_for_text(c, "grace").await;
        c.enter_parent_frame().await.unwrap();
        save_screenshot(c, "cross-site-iframe.png").await;

        assert_eq!(
            app.stored(&cookie).await.and_then(|d| d.get("user").cloned()),
            Some(serde_json::json!("ada"))
        );
        c.goto(&app.url("/whoami")).await.unwrap();
        wait_for_text(c, "ada").await;
        assert_eq!(jar_value(c, PLAIN_COOKIE).await.as_deref(), Some(cookie.as_str()));
    })
    .await;
}

/// The layer's defaults as shipped (`secure(true)`, so the name is
/// `__Host-carafe.sid`) on `http://localhost`, which Chromium treats as a
/// secure context: the browser keeps the cookie and sends it back.
#[tokio::test]
async fn a_host_prefixed_secure_cookie_works_on_http_localhost() {
    run(|browser| async move {
        let app = App::serve("localhost", true, None).await;
        let c = browser.client();
        c.goto(&app.url("/")).await.unwrap();
        wait_for_text(c, "count: 1").await;
        let value = wait_for_cookie(c, COOKIE).await;
        let jar = c.get_all_cookies().await.unwrap();
        let cookie = jar
            .iter()
            .find(|k| k.name() == COOKIE)
            .expect("the __Host- cookie is in the jar");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Lax"));

        c.refresh().await.unwrap();
        wait_for_text(c, "count: 2").await;
        let back = app
            .log
            .all()
            .into_iter()
            .filter(|r| r.path == "/")
            .nth(1)
            .expect("a second request");
        assert_eq!(
            back.session_cookie(COOKIE).as_deref(),
            Some(value.as_str()),
            "the browser sent it back"
        );
        assert_eq!(
            app.stored(&value).await.and_then(|d| d.get("count").cloned()),
            Some(serde_json::json!(2))
        );
    })
    .await;
}

// --- the applications --------------------------------------------------

/// The quickstart's router on a file store in a temporary directory,
/// behind a recording layer, served on loopback.
struct App {
    origin: String,
    layer: SessionLayer,
    cookie_name: &'static str,
    log: Log,
    _dir: tempfile::TempDir,
}

impl App {
    /// The quickstart as its README runs it on plain HTTP (`secure(false)`,
    /// so the cookie is `carafe.sid`), at `http://carafe.test:PORT`.
    async fn quickstart() -> App {
        App::serve(APP_HOST, false, None).await
    }

    /// The control for the iframe check: a cookie that asks to be sent to
    /// other sites' frames (`SameSite=None`, which needs `Secure`, so on
    /// `http://localhost`).
    async fn same_site_none() -> App {
        App::serve("localhost", true, Some(SameSite::None)).await
    }

    /// The quickstart with `secure(secure)` and `same_site` (`None`: the
    /// layer's default) at `http://host:PORT`.
    async fn serve(host: &str, secure: bool, same_site: Option<SameSite>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = SessionLayer::builder(FileStore::new(dir.path()).unwrap())
            .secret(SECRET)
            .secure(secure);
        if let Some(same_site) = same_site {
            builder = builder.same_site(same_site);
        }
        let layer = builder.build().unwrap();
        let log = Log::default();
        let addr = serve(log.record(quickstart::app(layer.clone()))).await;
        App {
            origin: format!("http://{host}:{}", addr.port()),
            cookie_name: if secure { COOKIE } else { PLAIN_COOKIE },
            layer,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// What the store holds for the session whose cookie value is `value`.
    async fn stored(&self, value: &str) -> Option<carafe::store::Data> {
        let cookie = format!("{}={value}", self.cookie_name);
        self.layer.read_session(&cookie).await.unwrap()
    }
}

/// The other site: pages that post to, link to and frame the app (and
/// frame a `control` app beside it, if one is given).
struct Attacker {
    origin: String,
}

impl Attacker {
    async fn serve(app: &App, control: Option<&App>) -> Attacker {
        let target = app.origin.clone();
        let logout = format!(
            r#"<!doctype html><title>win a prize</title>
<form id="f" method="post" action="{target}/logout"><input type="hidden" name="prize" value="1"></form>
<script>document.getElementById('f').submit()</script>"#
        );
        let link = format!(
            r#"<!doctype html><title>a link</title><a id="go" href="{target}/whoami">who am I there?</a>"#
        );
        let control = control.map_or_else(String::new, |control| {
            format!(
                r#"<h1>and, with SameSite=None, localhost/whoami:</h1>
<iframe src="{}/whoami" width="400" height="80"></iframe>"#,
                control.origin
            )
        });
        let frame = format!(
            r#"<!doctype html><title>a frame</title><h1>attacker.test frames carafe.test/whoami:</h1>
<iframe src="{target}/whoami" width="400" height="80"></iframe>{control}"#
        );
        let router = Router::new()
            .route("/post-logout", get(move || async move { Html(logout) }))
            .route("/link", get(move || async move { Html(link) }))
            .route("/frame", get(move || async move { Html(frame) }));
        let addr = serve(router).await;
        Attacker {
            origin: format!("http://{ATTACKER_HOST}:{}", addr.port()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    cookie: Option<String>,
    origin: Option<String>,
    referer: Option<String>,
}

impl Seen {
    fn of(req: &axum::extract::Request) -> Seen {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            cookie: header(http::header::COOKIE),
            origin: header(http::header::ORIGIN),
            referer: header(http::header::REFERER),
        }
    }

    /// The value of the cookie `name` this request sent.
    fn session_cookie(&self, name: &str) -> Option<String> {
        self.cookie.as_deref()?.split(';').find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.to_owned())
        })
    }
}

/// The requests an app received, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    /// `app` with every request recorded before it runs.
    fn record(&self, app: Router) -> Router {
        let log = self.clone();
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let log = log.clone();
                async move {
                    let seen = Seen::of(&req);
                    log.0.lock().unwrap().push(seen);
                    next.run(req).await
                }
            },
        ))
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, start: usize) -> Vec<Seen> {
        self.all().into_iter().skip(start).collect()
    }

    /// The last `GET path` after the first `start` requests.
    fn last_since(&self, start: usize, path: &str) -> Option<Seen> {
        self.since(start)
            .into_iter()
            .rev()
            .find(|r| r.method == "GET" && r.path == path)
    }
}

// --- browser steps -----------------------------------------------------

/// Runs `test` with a browser (or prints why not) within [`TEST_TIME`],
/// browser start included, and within what is left of [`RUN_TIME`]. On a
/// panic or a timeout the browser is killed (its drop); otherwise it quits.
async fn run<F, Fut>(test: F)
where
    F: FnOnce(Arc<Browser>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _one = ONE_BROWSER.lock().await;
    static FIRST_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let left = RUN_TIME.saturating_sub(FIRST_START.get_or_init(std::time::Instant::now).elapsed());
    let budget = TEST_TIME.min(left);
    let outcome = tokio::time::timeout(budget, async {
        let Some(browser) = launch_or_skip().await else {
            return;
        };
        let browser = Arc::new(browser);
        test(browser.clone()).await;
        let browser = Arc::into_inner(browser).expect("the test keeps no browser");
        browser.quit().await;
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("the browser test did not finish within {budget:?}"));
}

/// Logs in through a form posted from the app's own page; the new cookie.
async fn log_in(c: &Client, app: &App, user: &str) -> String {
    c.goto(&app.url("/")).await.unwrap();
    wait_for_text(c, "count: 1").await;
    submit_form(c, "/login", &[("user", user)]).await;
    wait_for_text(c, &format!("logged in as {user}")).await;
    wait_for_cookie(c, app.cookie_name).await
}

/// Builds a form in the current page and submits it (a top-level POST
/// navigation, as a person's click would make).
async fn submit_form(c: &Client, action: &str, fields: &[(&str, &str)]) {
    let fields: serde_json::Map<_, _> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
        .collect();
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of Object.entries(arguments[1])) {
             const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![serde_json::json!(action), serde_json::Value::Object(fields)],
    )
    .await
    .unwrap();
}

/// Waits until the page's text is `want`; panics with the last text seen.
async fn wait_for_text(c: &Client, want: &str) {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        // errors while a navigation replaces the document mean "not yet"
        if let Ok(body) = c.find(Locator::Css("body")).await {
            if let Ok(text) = body.text().await {
                if text.trim() == want {
                    return;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited {WAIT:?} for the page to say {want:?}; it says {last:?}");
}
