//! `FileStore` end to end: the layer over a real directory, what lands on
//! disk, restarts, logout, corrupt and oversized records, and the reaper.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::routing::get;
use axum::Router;
use carafe::store::StoreKey;
use carafe::{FileStore, MockClock, Reaper, Session, SessionLayer, SessionStore};
use support::*;

const IDLE: StdDuration = StdDuration::from_secs(30 * 60);

fn app(store: impl SessionStore, clock: &MockClock) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .clock(clock.clone())
        .secure(false)
        .auto(true)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    Router::new()
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
        .route(
            "/logout",
            get(|session: Session| async move {
                session.delete();
                "bye"
            }),
        )
        .layer(layer)
}

/// The names of the entries in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The one record file in `dir`.
fn only_record(dir: &Path) -> PathBuf {
    let names = entries(dir);
    assert_eq!(names.len(), 1, "one record file expected: {names:?}");
    let stem = names[0].strip_suffix(".json").expect("a .json record");
    assert!(
        StoreKey::parse(stem).is_some(),
        "named by its store key: {}",
        names[0]
    );
    dir.join(&names[0])
}

/// The session id in a `__Host-carafe.sid=<id>.<tag>` cookie (the part before the
/// signature).
fn id_of(cookie: &str) -> String {
    let value = cookie.split_once('=').unwrap().1;
    value.split('.').next().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_are_files_named_by_hash_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions");
    let clock = MockClock::default();

    let first = app(FileStore::new(&dir).unwrap(), &clock);
    let r = req(&first, "/count", None).await;
    assert_eq!(r.body, "count: 1");
    let cookie = r.cookie().unwrap();
    let id = id_of(&cookie);
    assert!(id.len() >= 32, "{cookie}");

    let record = only_record(&dir);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(!text.contains(&id), "the session id never reaches the disk");
    assert!(!record.to_string_lossy().contains(&id));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["data"]["count"], 1);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&record), 0o600);
    }

    // A new process: a new store on the same directory, a new layer.
    drop(first);
    let second = app(FileStore::new(&dir).unwrap(), &clock);
    let r = req(&second, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 2");
    assert_eq!(only_record(&dir), record, "the same file, updated in place");
    assert_eq!(entries(&dir).len(), 1, "no temporary file left behind");
}

#[tokio::test]
async fn logout_deletes_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = MockClock::default();
    let app = app(FileStore::new(tmp.path()).unwrap(), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    only_record(tmp.path());
    let r = req(&app, "/logout", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert!(entries(tmp.path()).is_empty());
    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!(r.body, "count: 1", "a deleted session is not brought back");
}

#[tokio::test]
async fn a_corrupt_file_is_a_fresh_session_and_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = MockClock::default();
    let app = app(FileStore::new(tmp.path()).unwrap(), &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let record = only_record(tmp.path());
    std::fs::write(&record, b"{\"data\": not json").unwrap();

    let r = req(&app, "/count", Some(&cookie)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "count: 1"));
    let fresh = r.cookie().expect("a new cookie");
    assert_ne!(id_of(&fresh), id_of(&cookie));
    let now = only_record(tmp.path());
    assert_ne!(now, record, "the corrupt file is gone, the new session stored");
}

#[tokio::test]
async fn an_oversized_session_is_a_500_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = MockClock::default();
    let store = FileStore::new(tmp.path()).unwrap().max_record_bytes(16 * 1024);
    let app = app(store, &clock);
    let cookie = req(&app, "/count", None).await.cookie().unwrap();
    let record = only_record(tmp.path());
    let before = std::fs::read(&record).unwrap();

    let r = req(&app, "/big", Some(&cookie)).await;
    assert_eq!(r.status, 500);
    assert_eq!(std::fs::read(&record).unwrap(), before, "the record is unchanged");
    assert_eq!(entries(tmp.path()).len(), 1, "no temporary file left behind");
    assert_eq!(req(&app, "/count", Some(&cookie)).await.body, "count: 2");
}

#[tokio::test]
async fn the_reaper_removes_expired_files() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = MockClock::default();
    let store = FileStore::new(tmp.path()).unwrap();
    let app = app(store.clone(), &clock);
    let old = req(&app, "/count", None).await.cookie().unwrap();
    clock.advance(IDLE / 2);
    let young = req(&app, "/count", None).await.cookie().unwrap();
    // A file that is not a record: never touched.
    std::fs::write(tmp.path().join("README"), b"keep me").unwrap();
    assert_eq!(entries(tmp.path()).len(), 3);

    // The expiry is on the mock clock; the reaper's interval is short so that
    // the test waits only for its next run.
    let reaper = Reaper::spawn_with_clock(
        Arc::new(store.clone()) as Arc<dyn SessionStore>,
        Arc::new(clock.clone()),
        StdDuration::from_millis(10),
    );
    clock.advance(IDLE / 2 + StdDuration::from_secs(1));
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while entries(tmp.path()).len() > 2 {
        assert!(tokio::time::Instant::now() < deadline, "the reaper did not run");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    reaper.shutdown().await;

    assert!(entries(tmp.path()).contains(&"README".to_owned()));
    assert_eq!(req(&app, "/count", Some(&young)).await.body, "count: 2");
    assert_eq!(req(&app, "/count", Some(&old)).await.body, "count: 1");
}
