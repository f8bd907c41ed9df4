//! The quickstart's HTTP contract, over a real TCP socket, on the file
//! store, with the example's own router.

mod support;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use support::*;

async fn start(dir: &std::path::Path) -> std::net::SocketAddr {
    let layer = carafe::SessionLayer::builder(carafe::FileStore::new(dir).unwrap())
        .secret(SECRET)
        .secure(false)
        .build()
        .unwrap();
    serve(quickstart::app(layer)).await
}

#[tokio::test]
async fn quickstart_contract_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path()).await;

    let r = http(addr, "GET", "/health", None, None).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    assert!(r.set_cookies.is_empty());

    let r = http(addr, "GET", "/", None, None).await;
    assert_eq!(r.body, "count: 1");
    let cookie = r.cookie().unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "one session file"
    );
    assert_eq!(http(addr, "GET", "/", Some(&cookie), None).await.body, "count: 2");
    assert_eq!(
        http(addr, "GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous"
    );

    let r = http(addr, "POST", "/login", Some(&cookie), Some("user=ada")).await;
    assert_eq!(r.body, "logged in as ada");
    let logged_in = r.cookie().expect("login cycles the id");
    assert_ne!(logged_in, cookie);
    assert_eq!(
        http(addr, "GET", "/whoami", Some(&logged_in), None).await.body,
        "ada"
    );
    assert_eq!(
        http(addr, "GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous",
        "old id is dead"
    );
    assert_eq!(
        http(addr, "GET", "/", Some(&logged_in), None).await.body,
        "count: 3",
        "data kept across login"
    );

    let r = http(addr, "POST", "/logout", Some(&logged_in), None).await;
    assert_eq!(r.body, "logged out");
    assert!(r.removes_cookie());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the session file is gone"
    );
    assert_eq!(
        http(addr, "GET", "/whoami", Some(&logged_in), None).await.body,
        "anonymous"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_with_the_same_secret() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    let cookie = http(first, "GET", "/", None, None).await.cookie().unwrap();
    let second = start(dir.path()).await;
    assert_eq!(
        http(second, "GET", "/", Some(&cookie), None).await.body,
        "count: 2"
    );
}

#[tokio::test]
async fn quickstart_binary_prints_its_address_and_serves() {
    // `cargo test` builds the examples too; build it here as well so this
    // test also works when run alone (a no-op when it is up to date)
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "quickstart"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success());
    let exe = workspace_root().join("target/debug/examples/quickstart");
    let exe = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| std::path::PathBuf::from(t).join("debug/examples/quickstart"))
        .unwrap_or(exe);
    assert!(
        exe.exists(),
        "the quickstart example was not built at {}",
        exe.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&exe)
        .env("CARAFE_ADDR", "127.0.0.1:0")
        .env("CARAFE_DATA_DIR", dir.path().join("sessions"))
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
    assert_eq!(http(addr, "GET", "/", None, None).await.body, "count: 1");
    assert_eq!(http(addr, "GET", "/health", None, None).await.body, "ok");
    child.kill().await.unwrap();
}

/// The workspace's root, where the examples' package is (this package is
/// `tests/`).
fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}
