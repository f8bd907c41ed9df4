//! Fuzzes the layer's request side: arbitrary bytes as a whole `Cookie`
//! header, through a `SessionLayer` on a `MemoryStore` around a tiny tower
//! service. Never panics, and never loads a session: the one stored session
//! has a cookie signed with a key made at random for this process.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use carafe::{Key, MemoryStore, Session, SessionLayer, SessionService};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tower::util::{BoxCloneSyncService, ServiceExt as _};
use tower::{service_fn, Layer as _};

type App = SessionService<BoxCloneSyncService<Request<()>, Response<String>, Infallible>>;

/// The tiny service: loads the session and answers whether it was loaded
/// (an existing one) or is new; on `/write`, stores a value.
async fn handler(req: Request<()>) -> Result<Response<String>, Infallible> {
    let session = Session::from_extensions(req.extensions())
        .await
        .expect("a memory store does not fail");
    if req.uri().path() == "/write" {
        session.insert("user", "ada").expect("a string serializes");
        session.save();
    }
    let loaded = session.last_accessed().is_some();
    Ok(Response::new(if loaded { "loaded" } else { "new" }.to_owned()))
}

/// The runtime, the layered service, and the stored session's genuine
/// `Cookie` header, made once per process.
fn fixture() -> &'static (Runtime, App) {
    static FIXTURE: OnceLock<(Runtime, App)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let layer = SessionLayer::builder(MemoryStore::new())
            .key(Key::generate())
            .build()
            .expect("the default configuration is valid");
        let app = layer.layer(BoxCloneSyncService::new(service_fn(handler)));
        // One stored session, confirmed, so the store is not empty and the
        // harness is shown to tell a loaded session from a new one.
        let set = call(&runtime, &app, "/write", None);
        let set_cookie = set.headers()[SET_COOKIE].to_str().expect("ascii").to_owned();
        let pair = set_cookie
            .split(';')
            .next()
            .expect("a name=value pair")
            .to_owned();
        let again = call(
            &runtime,
            &app,
            "/",
            Some(HeaderValue::from_str(&pair).expect("ascii")),
        );
        assert_eq!(again.body(), "loaded", "the genuine cookie loads its session");
        (runtime, app)
    })
}

fn call(runtime: &Runtime, app: &App, path: &str, cookie: Option<HeaderValue>) -> Response<String> {
    let mut req = Request::builder().uri(path).body(()).expect("a request");
    if let Some(cookie) = cookie {
        req.headers_mut().insert(COOKIE, cookie);
    }
    runtime
        .block_on(app.clone().oneshot(req))
        .unwrap_or_else(|never| match never {})
}

fuzz_target!(|data: &[u8]| {
    let (runtime, app) = fixture();
    // Bytes no header value may hold (CR, LF, NUL) never reach the layer.
    let Ok(header) = HeaderValue::from_bytes(data) else {
        return;
    };
    let response = call(runtime, app, "/", Some(header));
    assert_eq!(
        response.body(),
        "new",
        "an arbitrary Cookie header loaded a session"
    );
});
