//! A real browser for the browser tests: chromedriver on a free loopback
//! port and a fresh headless Chromium through it (fantoccini), both ended
//! when the [`Browser`] is dropped; and waits that poll with a deadline.
//!
//! Chromium resolves [`APP_HOST`] and [`ATTACKER_HOST`] to 127.0.0.1 and
//! every other name (but `localhost`) to nothing, so nothing leaves the
//! machine. Without `chromedriver` and `chromium` on the `PATH` (or at
//! `CARAFE_CHROMEDRIVER` and `CARAFE_CHROMIUM`), [`launch_or_skip`] prints a
//! `SKIPPED: ...` line and answers `None`, unless `CARAFE_REQUIRE_BROWSER=1`,
//! where it fails (`.ci/run` sets it).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

/// The application's host name in the browser.
pub const APP_HOST: &str = "carafe.test";
/// The other site's host name in the browser.
pub const ATTACKER_HOST: &str = "attacker.test";
/// How long one condition (a page's text, a cookie) is waited for.
pub const WAIT: Duration = Duration::from_secs(10);

/// One browser at a time in a test binary: the machine has two cores.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of the cookie `name` in the jar for the current page.
pub async fn jar_value(c: &Client, name: &str) -> Option<String> {
    let jar = c.get_all_cookies().await.unwrap();
    jar.iter()
        .find(|k| k.name() == name)
        .map(|k| k.value().to_owned())
}

/// Waits until the jar holds the cookie `name`; its value.
pub async fn wait_for_cookie(c: &Client, name: &str) -> String {
    wait_until_some(&format!("the cookie {name} in the jar"), || jar_value(c, name)).await
}

pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_some(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` every 50 ms until it answers `Some`, for at most [`WAIT`].
pub async fn wait_until_some<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a PNG of the current window under `target/browser/`.
pub async fn save_screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

// --- chromedriver and Chromium ---------------------------------------

/// How long chromedriver and the browser get to start.
const START: Duration = Duration::from_secs(30);

/// A WebDriver session in a headless Chromium of its own.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the WebDriver session (Chromium exits), then chromedriver.
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
        drop(self.driver);
    }
}

/// The chromedriver process, in a process group of its own (with the
/// Chromium it starts), killed with its group on drop; and the
/// browser's temporary profile.
struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // the group id is chromedriver's pid (`process_group(0)`)
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser, or `None` after printing `SKIPPED: ...` when chromedriver
/// or Chromium is missing; with `CARAFE_REQUIRE_BROWSER=1` a missing
/// one fails the test instead.
pub async fn launch_or_skip() -> Option<Browser> {
    let driver = program("CARAFE_CHROMEDRIVER", "chromedriver");
    let chromium = program("CARAFE_CHROMIUM", "chromium");
    let (Ok(driver), Ok(chromium)) = (&driver, &chromium) else {
        let missing: Vec<String> = [driver.err(), chromium.err()].into_iter().flatten().collect();
        let reason = format!(
            "no browser: {} (Debian: apt-get install chromium chromium-driver)",
            missing.join(", ")
        );
        assert!(
            std::env::var("CARAFE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "CARAFE_REQUIRE_BROWSER=1 but {reason}"
        );
        let _ = writeln!(std::io::stdout().lock(), "SKIPPED: {reason}");
        return None;
    };
    Some(launch(driver, chromium).await)
}

/// `$env`, or `name` found on the `PATH`; `Err` says what is missing.
fn program(env: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} is not a file", path.display()))
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("no {name} on the PATH"))
}

async fn launch(driver: &Path, chromium: &Path) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            profile.path().join("chromedriver.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let mut driver = Driver {
        child,
        _profile: profile,
    };
    let url = format!("http://127.0.0.1:{port}");
    wait_for_driver(&mut driver, port).await;

    let user_data = driver._profile.path().join("chromium");
    let rules = format!(
        "MAP {APP_HOST} 127.0.0.1, MAP {ATTACKER_HOST} 127.0.0.1, EXCLUDE localhost, EXCLUDE 127.0.0.1, MAP * ~NOTFOUND"
    );
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            // third-party cookies allowed, as in a normal Chrome
            // profile (this headless build blocks them otherwise), so
            // the iframe check sees `SameSite` at work
            "prefs": {
                "profile.cookie_controls_mode": 0,
                "profile.block_third_party_cookies": false,
            },
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                format!("--user-data-dir={}", user_data.display()),
                format!("--host-resolver-rules={rules}"),
                "--window-size=800,500",
            ],
        },
        "timeouts": { "pageLoad": 15_000, "script": 10_000, "implicit": 0 },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let client = tokio::time::timeout(
        START,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url),
    )
    .await
    .expect("Chromium starts in time")
    .unwrap_or_else(|e| panic!("a WebDriver session: {e}"));
    Browser { client, driver }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls chromedriver's port until it accepts connections (it listens
/// once it is ready).
async fn wait_for_driver(driver: &mut Driver, port: u16) {
    let deadline = tokio::time::Instant::now() + START;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        );
        if let Ok(Ok(_)) = attempt.await {
            return;
        }
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver answers within {START:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
