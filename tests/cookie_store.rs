//! The client-side, encrypted cookie store: the quickstart contract (through
//! `oneshot` and over TCP), bad cookies of every kind, expiry from inside the
//! cookie, the size limit, key rotation, the documented exceptions, and a
//! bounded fuzz smoke run over the decode path.

mod support;

#[allow(dead_code)]
#[path = "../examples/cookie.rs"]
mod cookie_example;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use carafe::store::Record;
use carafe::{CookieStore, Key, MemoryStore, MockClock, Session, SessionId, SessionLayer, Typed};
use http::StatusCode;
use serde_json::{json, Value};
use support::*;
use time::Duration;

const OLD_SECRET: &[u8] = b"the old secret, at least thirty-two bytes long";
const NEW_SECRET: &[u8] = b"the new secret, at least thirty-two bytes long";

fn key(secret: &[u8]) -> Key {
    Key::from_secret(secret).unwrap()
}

/// Decodes a cookie value as a layer with `SECRET` (and no old secret) would.
fn open(value: &str) -> Option<(SessionId, Record)> {
    CookieStore::new().__open(PLAIN_COOKIE, &key(SECRET), &[], value.as_bytes())
}

fn builder(store: CookieStore, clock: &MockClock) -> carafe::SessionLayerBuilder {
    SessionLayer::builder(store)
        .secret(SECRET)
        .clock(clock.clone())
        .secure(false)
}

type Params = Query<HashMap<String, String>>;

fn param(q: &Params, name: &str) -> String {
    q.0.get(name).cloned().unwrap_or_default()
}

/// The values the shared store conformance suite round-trips, minus the
/// 64 KiB string that no cookie can hold.
fn odd_values() -> Vec<(&'static str, Value)> {
    vec![
        ("a.b", json!("dotted")),
        ("", json!("empty key")),
        ("../x", json!("path-like key")),
        ("key with spaces", json!("spaced")),
        ("ü", json!("umlaut key")),
        ("$where", json!("dollar")),
        ("'; DROP TABLE sessions; --", json!("quote")),
        (
            "unicode",
            json!("héllo wörld ✓ 日本語 😀 \u{202e}rtl\u{202c} e\u{301}"),
        ),
        (
            "escapes",
            json!("quote \" backslash \\ newline \n tab \t nul \u{0}"),
        ),
        (
            "nested",
            json!({"list": [1, "two", null, true, {"deep": [[], {}]}], "obj": {"x": {"y": {"z": 1.5}}}}),
        ),
        ("empty_list", json!([])),
        ("empty_obj", json!({})),
        ("null", Value::Null),
        ("false", json!(false)),
        ("u64_max", json!(u64::MAX)),
        ("i64_min", json!(i64::MIN)),
        ("float", json!(-0.25)),
    ]
}

/// A test application: a counter plus routes for every session operation.
fn app(layer: SessionLayer) -> Router {
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
            "/same",
            get(|session: Session| async move {
                // writes the value the session already holds: no change
                let n = session.get::<u32>("count").unwrap();
                if let Some(n) = n {
                    session.insert("count", n).unwrap();
                }
                format!("{n:?}")
            }),
        )
        .route(
            "/set",
            get(|session: Session, q: Params| async move {
                session.insert(param(&q, "k"), param(&q, "v")).unwrap();
                "set"
            }),
        )
        .route(
            "/get",
            get(|session: Session, q: Params| async move {
                match session.get_value(&param(&q, "k")) {
                    Some(v) => v.to_string(),
                    None => "none".into(),
                }
            }),
        )
        .route(
            "/remove",
            get(
                |session: Session, q: Params| async move { format!("{:?}", session.remove(&param(&q, "k"))) },
            ),
        )
        .route(
            "/keys",
            get(|session: Session| async move {
                let mut keys = session.keys();
                keys.sort();
                keys.join(",")
            }),
        )
        .route(
            "/clear",
            get(|session: Session| async move {
                session.clear();
                "cleared"
            }),
        )
        .route(
            "/big",
            get(|session: Session, q: Params| async move {
                let n: usize = param(&q, "n").parse().unwrap();
                session.insert("big", "x".repeat(n)).unwrap();
                "big"
            }),
        )
        .route(
            "/big-persist",
            get(|session: Session, q: Params| async move {
                let n: usize = param(&q, "n").parse().unwrap();
                session.insert("big", "x".repeat(n)).unwrap();
                match session.persist().await {
                    Ok(()) => (StatusCode::OK, "persisted".to_owned()),
                    Err(err) => {
                        // the handler recovers: the value goes, nothing is due
                        session.remove("big");
                        (StatusCode::PAYLOAD_TOO_LARGE, err.to_string())
                    }
                }
            }),
        )
        .route(
            "/values",
            get(|session: Session| async move {
                for (k, v) in odd_values() {
                    session.insert(k, v).unwrap();
                }
                "stored"
            }),
        )
        .route(
            "/values-check",
            get(|session: Session| async move {
                let wrong: Vec<&str> = odd_values()
                    .into_iter()
                    .filter(|(k, v)| session.get_value(k).as_ref() != Some(v))
                    .map(|(k, _)| k)
                    .collect();
                format!("{wrong:?}")
            }),
        )
        .route(
            "/id",
            get(|session: Session| async move { session.id().expose() }),
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
        .layer(layer)
}

fn auto_app(clock: &MockClock) -> Router {
    app(builder(CookieStore::new(), clock).auto(true).build().unwrap())
}

/// A browser's cookie jar for the session cookie.
#[derive(Default)]
struct Jar(Option<String>);

impl Jar {
    fn take(&mut self, r: &Reply) {
        if r.removes_cookie() {
            self.0 = None;
        } else if let Some(c) = r.cookie() {
            self.0 = Some(c);
        }
    }
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The value part of a `name=value` pair.
fn value_of(cookie: &str) -> &str {
    cookie.split_once('=').map_or("", |(_, v)| v)
}

// --- the quickstart contract ----------------------------------------------

enum Client {
    App(Router),
    Tcp(std::net::SocketAddr),
}

impl Client {
    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, body: Option<&str>) -> Reply {
        match self {
            Client::App(app) => send(app, method, path, cookie, body).await,
            Client::Tcp(addr) => http(*addr, method, path, cookie, body).await,
        }
    }
}

fn example_layer(secret: &[u8]) -> SessionLayer {
    SessionLayer::builder(CookieStore::new())
        .secret(secret)
        .secure(false)
        .build()
        .unwrap()
}

/// Issue 2, point 9, with the session in the cookie.
async fn quickstart_contract(client: Client) {
    let r = client.send("GET", "/health", None, None).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    assert!(r.set_cookies.is_empty(), "/health never touches the session");

    let r = client.send("GET", "/", None, None).await;
    assert_eq!(r.body, "count: 1");
    let cookie = r.cookie().expect("a modified new session gets a cookie");
    assert!(cookie.starts_with("carafe.sid="));
    let (first_id, record) = open(value_of(&cookie)).expect("the cookie decrypts with the secret");
    assert_eq!(record.data.get("count"), Some(&json!(1)));

    let r = client.send("GET", "/", Some(&cookie), None).await;
    assert_eq!(r.body, "count: 2");
    let cookie = r.cookie().expect("a changed session gets a new cookie");
    let r = client.send("GET", "/whoami", Some(&cookie), None).await;
    assert_eq!(r.body, "anonymous");
    assert!(r.set_cookies.is_empty(), "a read sends no cookie");

    let r = client
        .send("POST", "/login", Some(&cookie), Some("user=ada"))
        .await;
    assert_eq!(r.body, "logged in as ada");
    let logged_in = r.cookie().expect("login sends a cookie");
    let (login_id, _) = open(value_of(&logged_in)).unwrap();
    assert_ne!(login_id, first_id, "login cycles the id");
    assert_eq!(
        client.send("GET", "/whoami", Some(&logged_in), None).await.body,
        "ada"
    );
    // Documented: the pre-login cookie still decrypts, but to the session as
    // it was before login, without the user.
    assert_eq!(
        client.send("GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous"
    );
    let r = client.send("GET", "/", Some(&logged_in), None).await;
    assert_eq!(r.body, "count: 3", "data kept across login");
    let logged_in = r.cookie().unwrap();

    let r = client.send("POST", "/logout", Some(&logged_in), None).await;
    assert_eq!(r.body, "logged out");
    assert!(r.removes_cookie(), "logout sends an expiring cookie");
    assert!(
        r.set_cookies[0].starts_with("carafe.sid=;"),
        "{:?}",
        r.set_cookies
    );
    assert_eq!(client.send("GET", "/whoami", None, None).await.body, "anonymous");
}

#[tokio::test]
async fn quickstart_contract_through_oneshot() {
    quickstart_contract(Client::App(cookie_example::app(example_layer(SECRET)))).await;
}

#[tokio::test]
async fn quickstart_contract_over_tcp() {
    let addr = serve(cookie_example::app(example_layer(SECRET))).await;
    quickstart_contract(Client::Tcp(addr)).await;
}

#[tokio::test]
async fn sessions_survive_a_restart_with_the_same_secret() {
    let first = serve(cookie_example::app(example_layer(SECRET))).await;
    let cookie = http(first, "GET", "/", None, None).await.cookie().unwrap();
    let second = serve(cookie_example::app(example_layer(SECRET))).await;
    assert_eq!(
        http(second, "GET", "/", Some(&cookie), None).await.body,
        "count: 2"
    );
    let other = serve(cookie_example::app(example_layer(NEW_SECRET))).await;
    assert_eq!(
        http(other, "GET", "/", Some(&cookie), None).await.body,
        "count: 1",
        "another secret cannot read the cookie"
    );
}

#[tokio::test]
async fn cookie_example_binary_prints_its_address_and_serves() {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "cookie", "--features", "cookie"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success());
    let exe = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| std::path::PathBuf::from(t).join("debug/examples/cookie"))
        .unwrap_or_else(|| workspace_root().join("target/debug/examples/cookie"));
    assert!(
        exe.exists(),
        "the cookie example was not built at {}",
        exe.display()
    );
    let mut child = tokio::process::Command::new(&exe)
        .env("CARAFE_ADDR", "127.0.0.1:0")
        .env("CARAFE_SECRET", "a secret for this test, longer than 32 bytes")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the example prints its address")
        .unwrap()
        .unwrap();
    let addr: std::net::SocketAddr = line
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    let r = http(addr, "GET", "/", None, None).await;
    assert_eq!(r.body, "count: 1");
    let cookie = r.cookie().unwrap();
    assert_eq!(http(addr, "GET", "/", Some(&cookie), None).await.body, "count: 2");
    assert_eq!(http(addr, "GET", "/health", None, None).await.body, "ok");
    child.kill().await.unwrap();
}

// --- bad cookies --------------------------------------------------------

/// Asserts that `value` as the session cookie gives a fresh session (and a
/// fresh id), answered with 200.
async fn assert_no_session(app: &Router, value: &str, known: &SessionId, what: &str) {
    let r = req(app, "/count", Some(&format!("carafe.sid={value}"))).await;
    assert_eq!(r.status, 200, "{what}: {value:?}");
    assert_eq!(r.body, "count: 1", "{what}: {value:?} must not load a session");
    let (id, _) = open(&r.cookie_value().unwrap()).unwrap();
    assert_ne!(&id, known, "{what}: the old id is never adopted");
}

/// A session with `count: 1` and its cookie value.
async fn good_cookie(app: &Router) -> (String, SessionId) {
    let value = req(app, "/count", None).await.cookie_value().unwrap();
    let (id, _) = open(&value).unwrap();
    (value, id)
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[tokio::test]
async fn tampered_cookies_are_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (good, id) = good_cookie(&app).await;
    assert_eq!(
        req(&app, "/read", Some(&format!("carafe.sid={good}"))).await.body,
        "Some(1)"
    );
    // every character replaced, through the whole layer
    for i in 0..good.len() {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_no_session(&app, &tampered, &id, &format!("character {i} replaced")).await;
    }
    // every bit of the decoded bytes flipped, re-encoded: decode only
    let raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut flipped = raw.clone();
            flipped[i] ^= 1 << bit;
            assert!(
                open(&URL_SAFE_NO_PAD.encode(&flipped)).is_none(),
                "byte {i} bit {bit} flipped was accepted"
            );
        }
    }
    // every character replaced by every other base64 character: decode only
    for i in 0..good.len() {
        for &c in ALPHABET {
            let mut bytes = good.clone().into_bytes();
            if bytes[i] == c {
                continue;
            }
            bytes[i] = c;
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(open(&tampered).is_none(), "{i}: {}", c as char);
        }
    }
    // the good cookie still works, also after hostile ones of the same name
    let r = req(
        &app,
        "/count",
        Some(&format!("carafe.sid=junk; carafe.sid={good}")),
    )
    .await;
    assert_eq!(r.body, "count: 2");
}

#[tokio::test]
async fn truncated_and_extended_cookies_are_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (good, id) = good_cookie(&app).await;
    for cut in [1, 2, 3, 4, 21, 22, 40, good.len() / 2, good.len() - 1] {
        assert_no_session(&app, &good[..good.len() - cut], &id, "truncated end").await;
        assert_no_session(&app, &good[cut..], &id, "truncated start").await;
    }
    for n in 0..good.len() {
        assert!(open(&good[..n]).is_none(), "prefix of {n} characters");
    }
    let raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    for n in 0..raw.len() {
        assert!(
            open(&URL_SAFE_NO_PAD.encode(&raw[..n])).is_none(),
            "raw prefix of {n}"
        );
    }
    for extra in ["A", "AA", "AAAA", "AAAAAAAAAAAAAAAA", "_"] {
        assert_no_session(&app, &format!("{good}{extra}"), &id, "extended").await;
    }
    let mut longer = raw.clone();
    longer.push(0);
    assert!(open(&URL_SAFE_NO_PAD.encode(&longer)).is_none());
}

#[tokio::test]
async fn not_base64_and_malformed_cookies_are_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (good, id) = good_cookie(&app).await;
    let raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    let hostile = [
        String::new(),
        "!!!!".into(),
        "%00%ff".into(),
        "not base64 at all".into(),
        "a".into(),
        URL_SAFE.encode(&raw),        // padded
        STANDARD_NO_PAD.encode(&raw), // the other alphabet
        format!("{good}="),
        format!("{good}=="),
        format!("\"{good}\""),
        good.replace('A', "."),
        format!("{}.{}", &good[..40], &good[40..]),
    ];
    for value in &hostile {
        if value == &good {
            continue;
        }
        assert_no_session(&app, value, &id, "malformed").await;
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
    assert!(CookieStore::new()
        .__open(PLAIN_COOKIE, &key(SECRET), &[], b"\xff\xfe")
        .is_none());
}

#[tokio::test]
async fn short_input_and_bad_nonce_length_are_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (good, id) = good_cookie(&app).await;
    let raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    // version byte only; a nonce cut short; a whole nonce but a short tag
    for len in [0, 1, 5, 12, 13, 14, 20, 28] {
        let mut short = raw[..len.min(raw.len())].to_vec();
        short.resize(len, 0);
        let value = URL_SAFE_NO_PAD.encode(&short);
        assert_no_session(&app, &value, &id, &format!("{len} bytes")).await;
    }
    // a 96-bit nonce is the only length: drop or add a nonce byte
    let mut dropped = raw.clone();
    dropped.remove(5);
    assert!(open(&URL_SAFE_NO_PAD.encode(&dropped)).is_none());
    let mut added = raw.clone();
    added.insert(5, 0);
    assert!(open(&URL_SAFE_NO_PAD.encode(&added)).is_none());
}

/// A well-formed plaintext for `id`, as the store writes it.
fn envelope(id: &str, created: i64, accessed: i64, expires: i64, data: &str) -> String {
    format!(r#"{{"i":"{id}","c":{created},"a":{accessed},"e":{expires},"d":{data}}}"#)
}

#[tokio::test]
async fn wrong_version_is_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (good, id) = good_cookie(&app).await;
    let now = carafe::Clock::now(&clock).unix_timestamp();
    let plain = envelope(
        &SessionId::generate().expose(),
        now,
        now,
        now + 3600,
        r#"{"count":41}"#,
    );
    let k = key(SECRET);
    // control: the crafted cookie with the real version loads
    let crafted = CookieStore::__seal(&k, PLAIN_COOKIE, 2, plain.as_bytes());
    assert_eq!(
        req(&app, "/count", Some(&format!("carafe.sid={crafted}")))
            .await
            .body,
        "count: 42"
    );
    // a cookie that authenticates for another version is refused
    for version in [0u8, 1, 3, 0x7f, 0xff] {
        let other = CookieStore::__seal(&k, PLAIN_COOKIE, version, plain.as_bytes());
        assert_no_session(&app, &other, &id, &format!("version {version}")).await;
    }
    // the version byte of a real cookie changed
    let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    raw[0] = 1;
    assert_no_session(&app, &URL_SAFE_NO_PAD.encode(&raw), &id, "version byte").await;
}

#[tokio::test]
async fn valid_encryption_of_invalid_json_is_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (_, id) = good_cookie(&app).await;
    let now = carafe::Clock::now(&clock).unix_timestamp();
    let sid = SessionId::generate().expose();
    let later = now + 3600;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bad: Vec<String> = vec![
        String::new(),
        "not json".into(),
        "{}".into(),
        "null".into(),
        "[]".into(),
        "\u{0}".into(),
        envelope(&sid, now, now, later, r#"{"count":1}"#)[..40].to_owned(),
        format!("{} trailing", envelope(&sid, now, now, later, "{}")),
        // a field missing, an unknown field, a field twice
        format!(r#"{{"i":"{sid}","c":{now},"a":{now},"d":{{}}}}"#),
        format!(r#"{{"i":"{sid}","c":{now},"a":{now},"e":{later},"d":{{}},"x":1}}"#),
        format!(r#"{{"i":"{sid}","i":"{sid}","c":{now},"a":{now},"e":{later},"d":{{}}}}"#),
        // ids that are not ids
        envelope("../../etc/passwd", now, now, later, "{}"),
        envelope(&sid.to_uppercase(), now, now, later, "{}"),
        envelope(&format!("{sid}0"), now, now, later, "{}"),
        envelope("", now, now, later, "{}"),
        // timestamps out of range or of the wrong type
        envelope(&sid, i64::MAX, now, later, "{}"),
        envelope(&sid, now, now, i64::MIN, "{}"),
        format!(r#"{{"i":"{sid}","c":"{now}","a":{now},"e":{later},"d":{{}}}}"#),
        format!(r#"{{"i":"{sid}","c":{now}.5,"a":{now},"e":{later},"d":{{}}}}"#),
        // data that is not a map
        envelope(&sid, now, now, later, "[]"),
        envelope(&sid, now, now, later, "1"),
        envelope(&sid, now, now, later, &deep),
        // not UTF-8
        String::from_utf8_lossy(b"\xff\xfe{}").into_owned(),
    ];
    let k = key(SECRET);
    for plain in &bad {
        let value = CookieStore::__seal(&k, PLAIN_COOKIE, 2, plain.as_bytes());
        if value.len() > 4096 {
            assert!(open(&value).is_none());
            continue;
        }
        assert_no_session(
            &app,
            &value,
            &id,
            &format!("plaintext {:?}", &plain[..plain.len().min(60)]),
        )
        .await;
    }
    // raw invalid UTF-8 inside a valid encryption
    let value = CookieStore::__seal(&k, PLAIN_COOKIE, 2, b"{\"i\":\"\xff\"}");
    assert!(open(&value).is_none());
    // deep nesting well within the size limit does not overflow the stack
    let nested = envelope(
        &sid,
        now,
        now,
        later,
        &format!(r#"{{"k":{}{}}}"#, "[".repeat(1000), "]".repeat(1000)),
    );
    let nested = CookieStore::__seal(&k, PLAIN_COOKIE, 2, nested.as_bytes());
    assert!(nested.len() < 4096);
    assert!(open(&nested).is_none());
    // control: a well-formed one is accepted
    let ok = CookieStore::__seal(
        &k,
        PLAIN_COOKIE,
        2,
        envelope(&sid, now, now, later, r#"{"count":7}"#).as_bytes(),
    );
    let (loaded, record) = open(&ok).unwrap();
    assert_eq!(loaded.expose(), sid);
    assert_eq!(record.data.get("count"), Some(&json!(7)));
}

#[tokio::test]
async fn oversized_incoming_cookies_are_no_session() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let (_, id) = good_cookie(&app).await;
    for n in [4097, 5000, 100_000] {
        assert_no_session(&app, &"A".repeat(n), &id, "oversized").await;
    }
    // a genuine cookie from a store with a larger limit is over this
    // store's limit: not even decrypted
    let big_store = CookieStore::new().max_cookie_bytes(16 * 1024);
    let big_app = app_with(big_store.clone(), &clock);
    let r = req(&big_app, "/big?n=6000", None).await;
    assert_eq!(r.status, 200);
    let big = r.cookie_value().unwrap();
    assert!(big.len() > 4096);
    assert!(
        big_store
            .__open(PLAIN_COOKIE, &key(SECRET), &[], big.as_bytes())
            .is_some(),
        "control"
    );
    assert!(open(&big).is_none(), "a value over the limit is refused");
    assert_eq!(
        req(&app, "/read", Some(&format!("carafe.sid={big}"))).await.body,
        "None"
    );
}

fn app_with(store: CookieStore, clock: &MockClock) -> Router {
    app(builder(store, clock).auto(true).build().unwrap())
}

// --- expiry inside the cookie ---------------------------------------------

#[tokio::test]
async fn replayed_cookie_after_idle_expiry_is_no_session() {
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock)
        .auto(true)
        .idle_timeout(std::time::Duration::from_secs(30 * 60))
        .build()
        .unwrap());
    let t0 = carafe::Clock::now(&clock).unix_timestamp();
    let first = req(&app, "/count", None).await.cookie().unwrap();
    let (_, record) = open(value_of(&first)).unwrap();
    assert_eq!(
        record.expires.unix_timestamp(),
        t0 + 30 * 60,
        "expiry is inside the cookie"
    );
    clock.advance(std::time::Duration::from_secs(29 * 60));
    let r = req(&app, "/count", Some(&first)).await;
    assert_eq!(r.body, "count: 2");
    let second = r.cookie().unwrap();
    clock.advance(std::time::Duration::from_secs(2 * 60));
    // 31 minutes after the first cookie was written: the browser may still
    // send it (a copy, a session cookie kept open), the server refuses it
    assert_eq!(req(&app, "/read", Some(&first)).await.body, "None");
    assert_eq!(req(&app, "/read", Some(&second)).await.body, "Some(2)");
    clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(req(&app, "/read", Some(&second)).await.body, "None");
    let r = req(&app, "/count", Some(&second)).await;
    assert_eq!(r.body, "count: 1", "an expired cookie gives a fresh session");
}

#[tokio::test]
async fn replayed_cookie_after_absolute_expiry_is_no_session() {
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock)
        .auto(true)
        .idle_timeout(std::time::Duration::from_secs(30 * 60))
        .absolute_lifetime(std::time::Duration::from_secs(2 * 60 * 60))
        .build()
        .unwrap());
    let mut jar = Jar::default();
    let r = req(&app, "/count", None).await;
    jar.take(&r);
    let copies = vec![jar.get().unwrap().to_owned()];
    let mut copies = copies;
    for n in 2..=5 {
        clock.advance(std::time::Duration::from_secs(25 * 60));
        let r = req(&app, "/count", jar.get()).await;
        assert_eq!(r.body, format!("count: {n}"));
        jar.take(&r);
        copies.push(jar.get().unwrap().to_owned());
    }
    clock.advance(std::time::Duration::from_secs(25 * 60)); // 125 minutes after creation
    assert_eq!(req(&app, "/read", jar.get()).await.body, "None");
    for copy in &copies {
        assert_eq!(req(&app, "/read", Some(copy)).await.body, "None");
    }
    // a server with a longer absolute lifetime and idle timeout still
    // refuses: the cookie's own expiry time has passed
    let lenient = app_with(CookieStore::new(), &clock);
    assert_eq!(req(&lenient, "/read", jar.get()).await.body, "None");
}

#[tokio::test]
async fn idle_timeout_of_the_server_applies_to_older_cookies() {
    // the server's idle timeout is checked as well as the cookie's expiry:
    // shortening it takes effect for cookies already out there
    let clock = MockClock::default();
    let long = app_with(CookieStore::new(), &clock);
    let cookie = req(&long, "/count", None).await.cookie().unwrap();
    clock.advance(std::time::Duration::from_secs(60 * 60));
    let short = app(builder(CookieStore::new(), &clock)
        .idle_timeout(std::time::Duration::from_secs(30 * 60))
        .build()
        .unwrap());
    assert_eq!(req(&long, "/read", Some(&cookie)).await.body, "Some(1)");
    assert_eq!(req(&short, "/read", Some(&cookie)).await.body, "None");
}

// --- size -----------------------------------------------------------------

#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn an_oversized_session_is_a_500_and_nothing_is_lost() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let r = req(&app, "/big?n=5000", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body, "session too large for the session store\n");
    assert!(
        r.set_cookies.is_empty(),
        "the browser's cookie is neither replaced nor removed"
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("session too large"))
        .unwrap_or_else(|| panic!("a tracing error names the size and the limit: {text}"));
    assert!(line.contains("the limit is 4096"), "{line}");
    assert!(line.contains("store=\"cookie\""), "{line}");
    let size: usize = line
        .split("session too large: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(size > 4096 && size < 8000, "{line}");
    // the session as it was
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(1)");
    assert_eq!(req(&app, "/get?k=big", Some(&cookie)).await.body, "none");
    // a new session that is too large gets no cookie at all
    let r = req(&app, "/big?n=5000", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.set_cookies.is_empty());
}

#[tokio::test]
async fn persist_reports_too_large_to_the_handler() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let r = req(&app, "/big-persist?n=5000", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body.contains("session too large"), "{}", r.body);
    assert!(r.body.contains("the limit is 4096"), "{}", r.body);
    assert!(r.set_cookies.is_empty());
    let r = req(&app, "/big-persist?n=100", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    let cookie = r.cookie().unwrap();
    assert_eq!(req(&app, "/get?k=big", Some(&cookie)).await.body.len(), 102);
}

#[tokio::test]
async fn the_limit_counts_the_whole_set_cookie_header() {
    let clock = MockClock::default();
    for (limit, name, max_age) in [
        (4096, "carafe.sid", false),
        (4096, "a-much-longer-cookie-name-for-this-app", true),
        (2000, "s", false),
    ] {
        let mut b = SessionLayer::builder(CookieStore::new().max_cookie_bytes(limit))
            .secret(SECRET)
            .clock(clock.clone())
            .cookie_name(name)
            .cookie_domain("example.com")
            .auto(true);
        if max_age {
            b = b.cookie_expires(carafe::CookieExpiry::MaxAge(std::time::Duration::from_secs(
                30 * 24 * 60 * 60,
            )));
        }
        let app = app(b.build().unwrap());
        // the largest value that fits, by bisection
        let (mut fits, mut fails) = (0usize, limit);
        while fails - fits > 1 {
            let mid = (fits + fails) / 2;
            let r = req(&app, &format!("/big?n={mid}"), None).await;
            if r.status == 200 {
                assert!(r.set_cookies[0].len() <= limit, "{}", r.set_cookies[0].len());
                fits = mid;
            } else {
                assert_eq!(r.status, 500);
                fails = mid;
            }
        }
        let header = req(&app, &format!("/big?n={fits}"), None).await.set_cookies[0].clone();
        assert!(
            header.len() <= limit && header.len() > limit - 4,
            "{limit} {name}: {}",
            header.len()
        );
        assert!(header.contains("Domain=example.com"));
        assert_eq!(max_age, header.contains("Max-Age="));
    }
}

#[tokio::test]
async fn per_cookie_overhead_is_as_documented() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    assert_eq!(CookieStore::FIXED_OVERHEAD, 119);
    let mut seen = Vec::new();
    for n in [0usize, 1, 2, 3, 10, 100, 1000, 2000] {
        let r = req(&app, &format!("/big?n={n}"), None).await;
        let value = r.cookie_value().unwrap();
        let (_, record) = open(&value).unwrap();
        let json = serde_json::to_string(&record.data).unwrap();
        assert_eq!(json.len(), n + 10, "{{\"big\":\"x…\"}}");
        let expected = (4 * (json.len() + CookieStore::FIXED_OVERHEAD)).div_ceil(3);
        assert_eq!(value.len(), expected, "data of {} bytes", json.len());
        seen.push((json.len(), value.len() - json.len()));
    }
    // what the module documentation states
    let empty = CookieStore::__seal(
        &key(SECRET),
        PLAIN_COOKIE,
        2,
        envelope(
            &SessionId::generate().expose(),
            1_900_000_000,
            1_900_000_000,
            1_900_000_000,
            "{}",
        )
        .as_bytes(),
    );
    assert_eq!(empty.len(), 162, "an empty session");
    let defaults = self::app(
        SessionLayer::builder(CookieStore::new())
            .secret(SECRET)
            .auto(true)
            .build()
            .unwrap(),
    );
    let r = req(&defaults, "/count", None).await;
    let attributes = r.set_cookies[0].len() - r.cookie_value().unwrap().len();
    assert_eq!(attributes, 58, "{}", r.set_cookies[0]);
    // with the defaults, data of up to 2909 bytes of JSON fits
    let room = (4096 - 58) * 3 / 4 - CookieStore::FIXED_OVERHEAD;
    assert_eq!(room, 2909);
    let r = req(&defaults, &format!("/big?n={}", room - 10), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.set_cookies[0].len(), 4096, "exactly the limit");
    let r = req(&defaults, &format!("/big?n={}", room - 9), None).await;
    assert_eq!(r.status, 500);
    // the overhead in bytes beyond the data's JSON: 159 + D/3
    for (json, overhead) in seen {
        assert!(
            overhead >= 159 + json / 3 && overhead <= 160 + json / 3,
            "{json}: {overhead}"
        );
    }
}

// --- keys -----------------------------------------------------------------

fn rotation_app(secret: &[u8], old: Option<&[u8]>, clock: &MockClock) -> Router {
    let mut b = SessionLayer::builder(CookieStore::new())
        .secret(secret)
        .clock(clock.clone())
        .auto(true);
    if let Some(old) = old {
        b = b.old_secret(old);
    }
    app(b.build().unwrap())
}

#[tokio::test]
async fn key_rotation_keeps_everyone_logged_in_and_dropping_the_old_secret_logs_everyone_out() {
    let clock = MockClock::default();
    let old_app = rotation_app(OLD_SECRET, None, &clock);
    let rotated = rotation_app(NEW_SECRET, Some(OLD_SECRET), &clock);
    let new_only = rotation_app(NEW_SECRET, None, &clock);
    let store = CookieStore::new();
    let (old_key, new_key) = (key(OLD_SECRET), key(NEW_SECRET));

    let old_cookie = req(&old_app, "/count", None).await.cookie().unwrap();
    assert!(store
        .__open(COOKIE, &old_key, &[], value_of(&old_cookie).as_bytes())
        .is_some());
    assert!(store
        .__open(COOKIE, &new_key, &[], value_of(&old_cookie).as_bytes())
        .is_none());

    // the old secret as `old_secret` still decrypts: nobody is logged out
    assert_eq!(req(&rotated, "/read", Some(&old_cookie)).await.body, "Some(1)");
    let r = req(&rotated, "/count", Some(&old_cookie)).await;
    assert_eq!(r.body, "count: 2");
    // and what it writes is encrypted with the current secret only
    let rewritten = r.cookie().unwrap();
    assert!(store
        .__open(COOKIE, &new_key, &[], value_of(&rewritten).as_bytes())
        .is_some());
    assert!(store
        .__open(COOKIE, &old_key, &[], value_of(&rewritten).as_bytes())
        .is_none());
    let fresh = req(&rotated, "/count", None).await.cookie().unwrap();
    assert!(store
        .__open(COOKIE, &new_key, &[], value_of(&fresh).as_bytes())
        .is_some());
    assert!(store
        .__open(COOKIE, &old_key, &[], value_of(&fresh).as_bytes())
        .is_none());
    assert_eq!(req(&old_app, "/read", Some(&fresh)).await.body, "None");
    assert_eq!(req(&new_only, "/read", Some(&rewritten)).await.body, "Some(2)");

    // dropping the old secret: a global logout of the sessions still under it
    assert_eq!(req(&new_only, "/read", Some(&old_cookie)).await.body, "None");
    // and rotating to a brand-new secret logs out everyone
    let replaced = rotation_app(b"a third secret, for an emergency logout", None, &clock);
    for cookie in [&rewritten, &fresh, &old_cookie] {
        assert_eq!(req(&replaced, "/read", Some(cookie)).await.body, "None");
    }
}

#[tokio::test]
async fn signing_and_encryption_keys_differ() {
    let clock = MockClock::default();
    let encrypted = auto_app(&clock);
    let signed = app(SessionLayer::builder(MemoryStore::new())
        .secret(SECRET)
        .clock(clock.clone())
        .auto(true)
        .build()
        .unwrap());
    let signed_cookie = req(&signed, "/count", None).await.cookie().unwrap();
    let encrypted_cookie = req(&encrypted, "/count", None).await.cookie().unwrap();
    assert_eq!(req(&signed, "/read", Some(&signed_cookie)).await.body, "Some(1)");
    assert_eq!(
        req(&encrypted, "/read", Some(&encrypted_cookie)).await.body,
        "Some(1)"
    );
    // same secret, same cookie name: neither accepts the other's cookie
    assert_eq!(req(&encrypted, "/read", Some(&signed_cookie)).await.body, "None");
    assert_eq!(req(&signed, "/read", Some(&encrypted_cookie)).await.body, "None");
    assert!(open(value_of(&signed_cookie)).is_none());
}

// --- documented exceptions ------------------------------------------------

#[tokio::test]
async fn overlapping_requests_the_last_response_cookie_wins() {
    let clock = MockClock::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let b = barrier.clone();
    let app = Router::new()
        .route(
            "/write",
            get(move |session: Session, q: Params| {
                let barrier = b.clone();
                async move {
                    // both requests have loaded the same cookie before either writes
                    barrier.wait().await;
                    session.insert(param(&q, "k"), 1).unwrap();
                    "written"
                }
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move {
                let mut keys = session.keys();
                keys.sort();
                keys.join(",")
            }),
        )
        .route(
            "/start",
            get(|session: Session| async move {
                session.insert("start", 0).unwrap();
                "started"
            }),
        )
        .layer(builder(CookieStore::new(), &clock).auto(true).build().unwrap());
    let cookie = req(&app, "/start", None).await.cookie().unwrap();
    let (ra, rb) = tokio::join!(
        req(&app, "/write?k=a", Some(&cookie)),
        req(&app, "/write?k=b", Some(&cookie)),
    );
    let (a, b) = (ra.cookie().unwrap(), rb.cookie().unwrap());
    // Each response carries the whole session as that request saw it; the
    // browser keeps whichever arrives last, and the other change is lost.
    assert_eq!(req(&app, "/keys", Some(&a)).await.body, "a,start");
    assert_eq!(req(&app, "/keys", Some(&b)).await.body, "b,start");
    let mut jar = Jar::default();
    jar.take(&ra);
    jar.take(&rb);
    assert_eq!(
        req(&app, "/keys", jar.get()).await.body,
        "b,start",
        "the last response's cookie wins"
    );
}

#[tokio::test]
async fn logout_cannot_revoke_a_copied_cookie() {
    // Documented: a client-side session cannot be revoked before it expires.
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock)
        .auto(true)
        .idle_timeout(std::time::Duration::from_secs(30 * 60))
        .build()
        .unwrap());
    let cookie = send(&app, "POST", "/login", None, None).await.cookie().unwrap();
    let r = send(&app, "POST", "/logout", Some(&cookie), None).await;
    assert!(r.removes_cookie(), "the browser is told to drop the cookie");
    // a copy taken before the logout still works ...
    assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "ada");
    // ... until its expiry
    clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(req(&app, "/whoami", Some(&cookie)).await.body, "anonymous");
}

// --- only changed sessions get a cookie -----------------------------------

#[tokio::test]
async fn set_cookie_only_when_the_session_changed_or_a_refresh_is_due() {
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock)
        .auto(true)
        .accessed_time_interval(std::time::Duration::from_secs(60))
        .build()
        .unwrap());
    // a new session that is only read: no cookie
    let r = req(&app, "/read", None).await;
    assert_eq!(r.body, "None");
    assert!(r.set_cookies.is_empty());
    // routes that never touch the session: no cookie, with or without one
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    for c in [None, Some(cookie.as_str()), Some("carafe.sid=garbage")] {
        assert!(req(&app, "/health", c).await.set_cookies.is_empty());
    }
    // reads within the accessed-time interval: no cookie
    clock.advance(std::time::Duration::from_secs(30));
    let r = req(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "Some(1)");
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // writing the value the session already holds is no change
    let r = req(&app, "/same", Some(&cookie)).await;
    assert_eq!(r.body, "Some(1)");
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // a change: a new cookie
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 2");
    let cookie = r.cookie().unwrap();
    // a read once the interval has passed refreshes the accessed time
    clock.advance(std::time::Duration::from_secs(2 * 60));
    let r = req(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "Some(2)");
    let refreshed = r.cookie().expect("an accessed-time refresh is due");
    let (_, before) = open(value_of(&cookie)).unwrap();
    let (_, after) = open(value_of(&refreshed)).unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(after.created, before.created);
    assert_eq!(after.accessed - before.accessed, Duration::minutes(2));
    // and the refreshed cookie is not refreshed again at once
    assert!(req(&app, "/read", Some(&refreshed)).await.set_cookies.is_empty());
    // a 5xx with auto-save writes nothing
    let r = req(&app, "/fail", Some(&refreshed)).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
    assert_eq!(req(&app, "/read", Some(&refreshed)).await.body, "Some(2)");
}

#[tokio::test]
async fn without_save_accessed_time_reads_never_send_a_cookie() {
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock)
        .auto(true)
        .save_accessed_time(false)
        .idle_timeout(std::time::Duration::from_secs(30 * 60))
        .build()
        .unwrap());
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    clock.advance(std::time::Duration::from_secs(20 * 60));
    assert!(req(&app, "/read", Some(&cookie)).await.set_cookies.is_empty());
    clock.advance(std::time::Duration::from_secs(20 * 60));
    // idle counts from the last write
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "None");
}

#[tokio::test]
async fn without_auto_only_saved_sessions_get_a_cookie() {
    let clock = MockClock::default();
    let app = app(builder(CookieStore::new(), &clock).build().unwrap());
    let r = req(&app, "/count", None).await;
    assert!(r.set_cookies.is_empty());
    let cookie = req(&app, "/count-save", None).await.cookie().unwrap();
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 2");
    assert!(r.set_cookies.is_empty(), "modified without save(): not written");
    assert_eq!(req(&app, "/read", Some(&cookie)).await.body, "Some(1)");
    let r = req(&app, "/count-save", Some(&cookie)).await;
    assert_eq!(
        req(&app, "/read", Some(&r.cookie().unwrap())).await.body,
        "Some(2)"
    );
}

#[tokio::test]
async fn response_headers_and_cookie_attributes() {
    let clock = MockClock::default();
    let app = app(SessionLayer::builder(CookieStore::new())
        .secret(SECRET)
        .clock(clock.clone())
        .auto(true)
        .build()
        .unwrap());
    let r = req(&app, "/count", None).await;
    let set = &r.set_cookies[0];
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert_eq!(r.headers.get(http::header::VARY).unwrap(), "Cookie");
    assert_eq!(
        r.headers.get(http::header::CACHE_CONTROL).unwrap(),
        "private, no-cache=\"Set-Cookie\""
    );
    // two cookies for the same data differ: a fresh nonce each time
    let a = req(&app, "/count", None).await.cookie_value().unwrap();
    let b = req(&app, "/count", None).await.cookie_value().unwrap();
    assert_ne!(a, b);
    let (ra, rb) = (
        URL_SAFE_NO_PAD.decode(&a).unwrap(),
        URL_SAFE_NO_PAD.decode(&b).unwrap(),
    );
    assert_eq!((ra[0], rb[0]), (2, 2), "version byte");
    assert_ne!(ra[1..13], rb[1..13], "nonces differ");
    // the plaintext does not show through
    let id = CookieStore::new()
        .__open(COOKIE, &key(SECRET), &[], a.as_bytes())
        .unwrap()
        .0
        .expose();
    assert!(!a.contains(&id) && !a.contains("count"));
}

// --- the store conformance, where its semantics apply ----------------------

#[tokio::test]
async fn conformance_over_http() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    let mut jar = Jar::default();
    macro_rules! get {
        ($path:expr) => {{
            let r = req(&app, $path, jar.get()).await;
            assert_eq!(r.status, 200, "{}: {}", $path, r.body);
            jar.take(&r);
            r.body
        }};
    }
    macro_rules! post {
        ($path:expr) => {{
            let r = send(&app, "POST", $path, jar.get(), None).await;
            assert_eq!(r.status, 200, "{}: {}", $path, r.body);
            jar.take(&r);
            r.body
        }};
    }
    // create, then read
    assert_eq!(get!("/set?k=a&v=1"), "set");
    assert_eq!(get!("/set?k=b&v=2"), "set");
    assert_eq!(get!("/keys"), "a,b");
    assert_eq!(get!("/get?k=a"), "\"1\"");
    let id = get!("/id");
    // update one key, keep the others
    assert_eq!(get!("/set?k=a&v=changed"), "set");
    assert_eq!(get!("/get?k=a"), "\"changed\"");
    assert_eq!(get!("/get?k=b"), "\"2\"");
    assert_eq!(get!("/id"), id, "an update keeps the id");
    // remove a key
    assert_eq!(get!("/remove?k=a"), "Some(String(\"changed\"))");
    assert_eq!(get!("/keys"), "b");
    assert_eq!(get!("/remove?k=missing"), "None");
    // odd keys and values round-trip
    assert_eq!(get!("/values"), "stored");
    assert_eq!(get!("/values-check"), "[]");
    // clear
    assert_eq!(get!("/clear"), "cleared");
    assert_eq!(get!("/keys"), "");
    // cycle_id: a new id, the data kept
    assert_eq!(get!("/set?k=c&v=3"), "set");
    let before = get!("/id");
    assert_eq!(post!("/login"), "logged in");
    let after = get!("/id");
    assert_ne!(before, after);
    assert_eq!(get!("/keys"), "c,user");
    // invalidate: a new id, the data gone
    assert_eq!(post!("/invalidate"), "invalidated");
    assert_ne!(get!("/id"), after);
    assert_eq!(get!("/keys"), "fresh");
    // delete: the cookie goes
    assert_eq!(post!("/logout"), "logged out");
    assert!(jar.get().is_none(), "logout removed the cookie");
    assert_eq!(get!("/keys"), "");
    // a loaded session's created time survives updates
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let (_, first) = open(value_of(&cookie)).unwrap();
    clock.advance(std::time::Duration::from_secs(5 * 60));
    let cookie = req(&app, "/count", Some(&cookie)).await.cookie().unwrap();
    let (_, second) = open(value_of(&cookie)).unwrap();
    assert_eq!(first.created, second.created);
    assert_eq!(second.accessed - first.accessed, Duration::minutes(5));
    assert_eq!(second.expires - second.accessed, Duration::days(14));
}

// --- typed sessions -------------------------------------------------------

#[derive(carafe::Session, Default, Debug)]
#[session(auto, default)]
struct Cart {
    items: Vec<String>,
    owner: Option<String>,
}

#[tokio::test]
async fn typed_sessions_work_unchanged() {
    let clock = MockClock::default();
    let app = Router::new()
        .route(
            "/add",
            get(|mut cart: Typed<Cart>, q: Params| async move {
                cart.items.push(param(&q, "item"));
                cart.items.join(",")
            }),
        )
        .route(
            "/show",
            get(|cart: Typed<Cart>| async move { format!("{:?} {:?}", cart.items, cart.owner) }),
        )
        .route(
            "/claim",
            get(|mut cart: Typed<Cart>| async move {
                cart.owner = Some("ada".into());
                cart.cycle_id();
                "claimed"
            }),
        )
        .layer(builder(CookieStore::new(), &clock).build().unwrap());
    let mut jar = Jar::default();
    let r = req(&app, "/show", None).await;
    assert_eq!(r.body, "[] None");
    assert!(r.set_cookies.is_empty());
    let r = req(&app, "/add?item=tea", None).await;
    jar.take(&r);
    let r = req(&app, "/add?item=cake", jar.get()).await;
    assert_eq!(r.body, "tea,cake");
    jar.take(&r);
    let r = req(&app, "/show", jar.get()).await;
    assert_eq!(r.body, "[\"tea\", \"cake\"] None");
    assert!(r.set_cookies.is_empty(), "a typed read sends no cookie");
    let r = req(&app, "/claim", jar.get()).await;
    jar.take(&r);
    assert_eq!(
        req(&app, "/show", jar.get()).await.body,
        "[\"tea\", \"cake\"] Some(\"ada\")"
    );
    let (_, record) = open(value_of(jar.get().unwrap())).unwrap();
    assert_eq!(record.data.get("items"), Some(&json!(["tea", "cake"])));
}

// --- fuzz smoke -----------------------------------------------------------

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn b64(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| ALPHABET[self.below(64)]).collect()
    }
}

/// One random mutation of `value`.
fn mutate(rng: &mut Rng, value: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = v.len().max(1);
        match rng.below(9) {
            0 => {
                let i = rng.below(len).min(v.len().saturating_sub(1));
                if !v.is_empty() {
                    v[i] = ALPHABET[rng.below(64)];
                }
            }
            1 => {
                // a bit flip in the decoded bytes
                if let Ok(mut raw) = URL_SAFE_NO_PAD.decode(&v) {
                    if !raw.is_empty() {
                        let i = rng.below(raw.len());
                        raw[i] ^= 1 << rng.below(8);
                    }
                    v = URL_SAFE_NO_PAD.encode(raw).into_bytes();
                }
            }
            2 => v.truncate(rng.below(len)),
            3 => {
                let i = rng.below(len + 1).min(v.len());
                v.insert(i, ALPHABET[rng.below(64)]);
            }
            4 => {
                if !v.is_empty() {
                    v.remove(rng.below(v.len()));
                }
            }
            5 => {
                if v.len() > 1 {
                    let (i, j) = (rng.below(v.len()), rng.below(v.len()));
                    v.swap(i, j);
                }
            }
            6 => {
                let n = 1 + rng.below(8);
                let extra = rng.b64(n);
                v.extend(extra);
            }
            7 => {
                // splice with another valid cookie
                let cut = rng.below(v.len().min(other.len()) + 1);
                let mut s = v[..cut.min(v.len())].to_vec();
                s.extend_from_slice(&other[cut.min(other.len())..]);
                v = s;
            }
            _ => {
                let i = rng.below(len).min(v.len().saturating_sub(1));
                if !v.is_empty() {
                    v[i] = rng.next() as u8;
                }
            }
        }
    }
    v
}

#[tokio::test]
async fn fuzz_smoke_decode_never_panics_and_never_accepts_a_mutation() {
    let clock = MockClock::default();
    let app = auto_app(&clock);
    // genuine cookies of several sizes, under the test secret
    let mut valid = Vec::new();
    for n in [0usize, 1, 2, 50, 300, 1500] {
        let value = req(&app, &format!("/big?n={n}"), None)
            .await
            .cookie_value()
            .unwrap();
        assert!(open(&value).is_some());
        valid.push(value.into_bytes());
    }
    let store = CookieStore::new();
    let (k, old) = (key(SECRET), [key(OLD_SECRET), key(NEW_SECRET)]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs = 0usize;
    let mut rejected_mutations = 0usize;
    // random bytes, random base64, random layouts with the right version
    for round in 0..9_000 {
        let len = rng.below(if round % 10 == 0 { 6000 } else { 400 });
        let input = match round % 3 {
            0 => rng.bytes(len),
            1 => rng.b64(len),
            _ => {
                let mut raw = rng.bytes(len);
                if let Some(first) = raw.first_mut() {
                    *first = 1;
                }
                URL_SAFE_NO_PAD.encode(raw).into_bytes()
            }
        };
        assert!(
            CookieStore::__fuzz_decode(&input).is_none(),
            "random input {round} accepted"
        );
        assert!(
            store.__open(PLAIN_COOKIE, &k, &old, &input).is_none(),
            "random input {round} accepted"
        );
        inputs += 1;
    }
    // mutated genuine cookies: never accepted unless unchanged
    for round in 0..11_000 {
        let base = &valid[round % valid.len()];
        let other = &valid[(round + 1 + rng.below(valid.len() - 1)) % valid.len()];
        let mutated = mutate(&mut rng, base, other);
        let accepted = store.__open(PLAIN_COOKIE, &k, &old, &mutated).is_some();
        if valid.contains(&mutated) {
            assert!(
                accepted,
                "an unchanged (or spliced back whole) cookie must still decode"
            );
        } else {
            assert!(
                !accepted,
                "mutation {round} accepted: {:?}",
                String::from_utf8_lossy(&mutated)
            );
            rejected_mutations += 1;
        }
        assert!(CookieStore::__fuzz_decode(&mutated).is_none());
        inputs += 1;
    }
    assert!(
        inputs >= 20_000 && rejected_mutations > 10_000,
        "{inputs} {rejected_mutations}"
    );
}

// --- review findings (issue 10, item 7) ------------------------------------

#[tokio::test]
async fn a_copied_cookie_cannot_be_refreshed_past_thirty_days_by_default() {
    let clock = MockClock::default();
    // the default layer: no absolute lifetime given
    let app = app(builder(CookieStore::new(), &clock).auto(true).build().unwrap());
    let mut jar = req(&app, "/count", None).await.cookie().unwrap();
    // used every day, each answer refreshes the cookie
    for day in 2..=29 {
        clock.advance(std::time::Duration::from_secs(24 * 3600));
        let r = req(&app, "/count", Some(&jar)).await;
        assert_eq!(r.body, format!("count: {day}"));
        jar = r.cookie().unwrap();
    }
    // day 31 from creation: however fresh the cookie, the session is over
    clock.advance(std::time::Duration::from_secs(2 * 24 * 3600));
    assert_eq!(req(&app, "/count", Some(&jar)).await.body, "count: 1");
}

#[tokio::test]
async fn a_cookie_cannot_move_between_layers_that_share_a_secret() {
    let clock = MockClock::default();
    let store = MemoryStore::new();
    // the cookie store, and signed ids over one shared server-side store
    let kinds: [&dyn Fn(&str) -> Router; 2] = [
        &|name| {
            app(builder(CookieStore::new(), &clock)
                .cookie_name(name)
                .auto(true)
                .build()
                .unwrap())
        },
        &|name| {
            app(SessionLayer::builder(store.clone())
                .secret(SECRET)
                .clock(clock.clone())
                .secure(false)
                .cookie_name(name)
                .auto(true)
                .build()
                .unwrap())
        },
    ];
    for named in kinds {
        let (shop, admin) = (named("shop.sid"), named("admin.sid"));
        let cookie = req(&shop, "/count", None).await.cookie().unwrap();
        let value = value_of(&cookie);
        // control: it works where it was issued
        assert_eq!(
            req(&shop, "/count", Some(&format!("shop.sid={value}")))
                .await
                .body,
            "count: 2"
        );
        // under the other layer's name it is no session
        let r = req(&admin, "/count", Some(&format!("admin.sid={value}"))).await;
        assert_eq!(r.body, "count: 1");
    }
}

/// The workspace's root, where the examples' package is (this package is
/// `tests/`).
fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}
