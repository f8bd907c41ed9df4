//! Crash safety (issue 10, item 3): a server on the `FileStore`, and one on
//! SQLite, is killed with SIGKILL in the middle of a burst of writes,
//! restarted on the same data, and every session it ever issued loads
//! whole or is cleanly absent. No record is torn, no request fails, no
//! answered write is lost and no answered logout is undone.
//!
//! The server is this test binary itself, run again as a child process
//! with [`CHILD`] set (the `#[ignore]`d `crash_child_server` below), so the
//! test needs no other binary.
#![cfg(unix)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use carafe::{FileStore, Session, SessionLayer, SqliteStore};
use support::client::try_http;
use support::SECRET;

/// The child's instructions: `file:<dir>` or `sqlite:<path>`.
const CHILD: &str = "CARAFE_CRASH_CHILD";

/// The part of a `Set-Cookie` (or `Cookie`) header that is the session pair.
type Cookie = String;

/// The server the child runs. `/write?n=N` stores `n`, a blob whose length
/// depends on `n`, and a check value tying the two, so a record that mixes
/// two writes (torn) is seen; `/check` says which.
fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/write",
            get(
                |session: Session, Query(q): Query<HashMap<String, u64>>| async move {
                    let n = q.get("n").copied().unwrap_or(0);
                    let blob = "x".repeat(usize::try_from(n * 37 % 6000).unwrap_or(0));
                    session.insert("n", n).unwrap();
                    session.insert("check", format!("{n}:{}", blob.len())).unwrap();
                    session.insert("blob", blob).unwrap();
                    format!("wrote {n}")
                },
            ),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.delete();
                "bye"
            }),
        )
        .route(
            "/check",
            get(|session: Session| async move {
                let Some(n) = session.get::<u64>("n").unwrap() else {
                    return "absent".to_owned();
                };
                let blob: String = session.get("blob").unwrap().unwrap_or_default();
                let check: String = session.get("check").unwrap().unwrap_or_default();
                if check == format!("{n}:{}", blob.len()) {
                    format!("ok {n}")
                } else {
                    format!("torn {n} {check} {}", blob.len())
                }
            }),
        )
        .layer(layer)
}

/// The child process: serves [`app`] on the store [`CHILD`] names and
/// prints its port. Does nothing in an ordinary test run.
#[test]
#[ignore = "the crash tests run it as their child process"]
fn crash_child_server() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    // the parent holds our stdin: when it goes away (even killed), so do we
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let builder = match spec.split_once(':') {
            Some(("file", dir)) => SessionLayer::builder(FileStore::new(dir).unwrap()),
            Some(("sqlite", path)) => {
                let store = SqliteStore::connect(&format!("sqlite://{path}?mode=rwc"))
                    .await
                    .unwrap();
                store.migrate().await.unwrap();
                SessionLayer::builder(store)
            }
            _ => panic!("bad {CHILD}: {spec}"),
        };
        let layer = builder.secret(SECRET).secure(false).auto(true).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        axum::serve(listener, app(layer)).await.unwrap();
    });
}

/// The child server; killed (SIGKILL) when dropped, so a failing test
/// leaves no server behind.
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the child server on `spec` and waits for its port.
fn start(spec: &str) -> (Server, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("the child prints its port").unwrap();
        if let Some((_, port)) = line.split_once("PORT ") {
            break port.parse::<u16>().unwrap();
        }
    };
    // keep draining the child's stdout so it never blocks on a full pipe
    std::thread::spawn(move || lines.for_each(drop));
    (Server(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The session pair a reply sets.
fn cookie(reply: &support::Reply) -> Option<Cookie> {
    reply.cookie()
}

/// What the parent knows for certain about one session: the last write the
/// server answered (it must survive), and whether a logout was answered.
#[derive(Default, Clone)]
struct Known {
    answered: u64,
    logged_out: bool,
}

async fn crash_and_restart(spec: &str) {
    let (mut child, addr) = start(spec);
    // sessions that exist before the burst; a quarter are logged out
    let mut sessions: Vec<(Cookie, Known)> = Vec::new();
    for i in 0..40u64 {
        let r = try_http(addr, "GET", &format!("/write?n={i}"), None, None)
            .await
            .unwrap();
        assert_eq!(r.body, format!("wrote {i}"));
        sessions.push((
            cookie(&r).unwrap(),
            Known {
                answered: i,
                logged_out: false,
            },
        ));
    }
    for (cookie, known) in sessions.iter_mut().take(10) {
        let r = try_http(addr, "POST", "/logout", Some(cookie), Some(""))
            .await
            .unwrap();
        assert_eq!(r.body, "bye");
        known.logged_out = true;
    }
    let sessions = Arc::new(Mutex::new(sessions));
    // the burst: writers on the live sessions and new sessions being made,
    // until the server is killed under them
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let sessions = Arc::clone(&sessions);
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            // each task owns its sessions (slots 10 + task, 18 + task, …), so
            // the writes of one session are sequential and increasing
            let own: Vec<usize> = (10..40).filter(|s| (s - 10) % 8 == task as usize).collect();
            for round in 0u64.. {
                if round == u64::MAX {
                    break;
                }
                let n = 1000 + task * 1_000_000 + round;
                let slot = own[usize::try_from(round).unwrap() % own.len()];
                let new = round % 4 == 3;
                let existing = sessions.lock().unwrap()[slot].0.clone();
                let cookie = (!new).then_some(existing.as_str());
                let r = match try_http(addr, "GET", &format!("/write?n={n}"), cookie, None).await {
                    Ok(r) if r.body == format!("wrote {n}") => r,
                    // the server was killed under this request
                    Ok(r) => return format!("{}: {}", r.status, r.body),
                    Err(err) => return err.to_string(),
                };
                answered.fetch_add(1, Ordering::Relaxed);
                let mut sessions = sessions.lock().unwrap();
                if new {
                    sessions.push((
                        r.cookie().unwrap(),
                        Known {
                            answered: n,
                            logged_out: false,
                        },
                    ));
                } else {
                    sessions[slot].1.answered = n;
                }
            }
            String::from("the writer ran out of rounds")
        }));
    }
    // a bounded wait for the burst to be under way (not a timing test: the
    // kill lands wherever the writes are)
    for _ in 0..12_000 {
        if answered.load(Ordering::Relaxed) >= 150 || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(early) = tasks.iter().position(|t| t.is_finished()) {
        let why = tasks.swap_remove(early).await.unwrap();
        panic!("a writer stopped before the kill: {why}");
    }
    child.kill(); // SIGKILL
    for task in tasks {
        // each writer ends with the error the kill gave it
        let _ = task.await.unwrap();
    }
    let burst = answered.load(Ordering::Relaxed);

    let (mut child, addr) = start(spec);
    let sessions = sessions.lock().unwrap().clone();
    let (mut loaded, mut absent) = (0, 0);
    for (cookie, known) in &sessions {
        let r = try_http(addr, "GET", "/check", Some(cookie), None).await.unwrap();
        assert_eq!(r.status, 200, "no session makes a request fail: {}", r.body);
        assert!(!r.body.starts_with("torn"), "a torn record: {}", r.body);
        if known.logged_out {
            assert_eq!(r.body, "absent", "an answered logout survives the crash");
            absent += 1;
            continue;
        }
        // the last write the server answered is there, or a later one whose
        // answer the crash cut off
        let n: u64 = r
            .body
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("an answered session was lost: {}", r.body))
            .parse()
            .unwrap();
        assert!(
            n >= known.answered,
            "write {} answered, {n} loaded",
            known.answered
        );
        loaded += 1;
    }
    assert_eq!(absent, 10);
    assert!(
        loaded >= 30 && burst >= 150,
        "{loaded} loaded, {burst} writes answered"
    );
    child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_survives_sigkill_mid_burst() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("file:{}", dir.path().join("sessions").display());
    crash_and_restart(&spec).await;
    // nothing on disk is torn: every record file is a whole record (temp
    // files of the killed writes may remain; the reaper removes them)
    for entry in std::fs::read_dir(dir.path().join("sessions")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path).unwrap();
            serde_json::from_slice::<carafe::store::Record>(&bytes)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_sigkill_mid_burst() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    crash_and_restart(&format!("sqlite:{}", path.display())).await;
    // the database is intact
    use carafe::store::sqlx::sqlite::SqlitePoolOptions;
    let pool = SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (check,): (String,) = carafe::store::sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}
