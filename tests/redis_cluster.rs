//! The Redis store on a real Redis Cluster (issue 10, item 6), through
//! `RedisStore::cluster` (feature `redis-cluster`).
//!
//! The shared cluster is the one whose seed URLs are in
//! `CARAFE_REDIS_CLUSTER` (comma-separated; `.ci/run` starts a 3-master
//! cluster on 127.0.0.1:7001-7003 with `.ci/redis-cluster` and sets it).
//! Without it each test prints `SKIPPED: no Redis Cluster (...)` and
//! passes, unless `CARAFE_REQUIRE_CLUSTER=1`, where it fails. Every test
//! works under its own random key prefix and removes its keys afterwards.
//!
//! The node-failure test never touches the shared cluster: it starts a
//! private 3-master cluster of its own on free ports in a temporary
//! directory, and kills and restarts one of its nodes.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use carafe::store::conformance::{self, Options};
use carafe::store::RedisStore;
use carafe::{Session, SessionId, SessionLayer};
use support::client::Client;
use support::servers::{cluster_unavailable, redis_cluster_nodes};
use support::{serve, SECRET};

// ---------------------------------------------------------------------------
// the clusters

/// The shared cluster's seed URLs, when it answers a `PING` on every
/// master; otherwise the skip rule.
async fn shared_cluster() -> Option<Vec<String>> {
    let nodes = redis_cluster_nodes()?;
    let store = RedisStore::cluster(nodes.iter().cloned()).expect("valid cluster URLs");
    match store.ping().await {
        Ok(()) => Some(nodes),
        Err(err) => {
            cluster_unavailable(format_args!("CARAFE_REDIS_CLUSTER does not answer: {err}"));
            None
        }
    }
}

/// A plain (non-cluster) connection to one node, to look at what it holds.
async fn node(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid node URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the node answers")
}

/// A random key prefix on a cluster whose seed URLs are the masters.
struct Prefix {
    nodes: Vec<String>,
    name: String,
}

impl Prefix {
    fn new(nodes: &[String]) -> Self {
        Prefix {
            nodes: nodes.to_vec(),
            name: format!("carafe-cluster-test:{}", &SessionId::generate().expose()[..16]),
        }
    }

    fn store(&self) -> RedisStore {
        RedisStore::cluster_builder(self.nodes.iter().cloned())
            .prefix(self.name.as_str())
            .build()
            .expect("valid cluster URLs")
    }

    /// The keys under the prefix, node by node (in the order of `nodes`).
    async fn keys_by_node(&self) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        for url in &self.nodes {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.name))
                .query_async(&mut node(url).await)
                .await
                .expect("KEYS");
            all.push(keys);
        }
        all
    }

    /// Every key under the prefix, with the index of the node holding it.
    async fn keys(&self) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for (i, keys) in self.keys_by_node().await.into_iter().enumerate() {
            all.extend(keys.into_iter().map(|key| (key, i)));
        }
        all
    }

    /// Deletes the prefix's keys, each on the node that holds it.
    async fn clean(&self) {
        for (i, keys) in self.keys_by_node().await.into_iter().enumerate() {
            let mut conn = node(&self.nodes[i]).await;
            for key in keys {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            }
        }
    }
}

/// The cluster slot of a Redis key, as the cluster computes it.
async fn slot(url: &str, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut node(url).await)
        .await
        .expect("CLUSTER KEYSLOT")
}

// ---------------------------------------------------------------------------
// an application

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

fn app(store: RedisStore, store_timeout: Duration) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .secure(false)
        .store_timeout(store_timeout)
        .build()
        .expect("a valid layer");
    Router::new()
        .route("/", get(count))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .layer(layer)
}

fn internal(err: carafe::SessionError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn count(session: Session) -> Result<String, (StatusCode, String)> {
    let n = session.get::<u64>("count").map_err(internal)?.unwrap_or(0) + 1;
    session.insert("count", n).map_err(internal)?;
    session.save();
    Ok(format!("count: {n}"))
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<String, (StatusCode, String)> {
    session.insert("user", &form.user).map_err(internal)?;
    session.cycle_id();
    session.save();
    Ok(format!("logged in as {}", form.user))
}

async fn whoami(session: Session) -> Result<String, (StatusCode, String)> {
    Ok(session
        .get::<String>("user")
        .map_err(internal)?
        .unwrap_or_else(|| "anonymous".into()))
}

async fn logout(session: Session) -> &'static str {
    session.delete();
    "logged out"
}

// ---------------------------------------------------------------------------
// 1. the conformance suite

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_the_cluster() {
    let Some(nodes) = shared_cluster().await else {
        return;
    };
    let prefixes = Arc::new(Mutex::new(Vec::new()));
    let made = prefixes.clone();
    conformance::run_with(Options::new().native_expiry(true), move || {
        let prefix = Prefix::new(&nodes);
        let store = prefix.store();
        made.lock().expect("not poisoned").push(prefix);
        async move { store }
    })
    .await;
    let prefixes = std::mem::take(&mut *prefixes.lock().expect("not poisoned"));
    assert!(prefixes.len() >= 10);
    for prefix in prefixes {
        prefix.clean().await;
    }
}

// ---------------------------------------------------------------------------
// 2. a login over HTTP, the old and new keys in different slots

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_moves_the_session_across_slots_and_nodes() {
    let Some(nodes) = shared_cluster().await else {
        return;
    };
    let prefix = Prefix::new(&nodes);
    let addr = serve(app(prefix.store(), Duration::from_secs(5))).await;

    let mut across_slots = 0;
    let mut across_nodes = 0;
    for visitor in 0..10 {
        let mut client = Client::default();
        assert_eq!(client.get(addr, "/").await.body, "count: 1");
        assert_eq!(client.get(addr, "/").await.body, "count: 2");
        let before = prefix.keys().await;
        assert_eq!(before.len(), 1, "visitor {visitor}: one session: {before:?}");
        let (old_key, old_node) = before[0].clone();
        let old_cookie = client.cookie.clone().expect("a session cookie");

        let reply = client.post(addr, "/login", "user=ada").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "logged in as ada")
        );
        assert_ne!(client.cookie.as_ref(), Some(&old_cookie), "a new id at login");

        let after = prefix.keys().await;
        assert_eq!(
            after.len(),
            1,
            "visitor {visitor}: the session moved, not copied: {after:?}"
        );
        let (new_key, new_node) = after[0].clone();
        assert_ne!(new_key, old_key);
        if slot(&nodes[0], &old_key).await != slot(&nodes[0], &new_key).await {
            across_slots += 1;
        }
        if old_node != new_node {
            across_nodes += 1;
        }
        // The data moved with the session, and the old cookie is worth nothing.
        assert_eq!(client.get(addr, "/whoami").await.body, "ada");
        assert_eq!(client.get(addr, "/").await.body, "count: 3");
        let mut old = Client {
            cookie: Some(old_cookie),
        };
        assert_eq!(old.get(addr, "/whoami").await.body, "anonymous");

        assert_eq!(client.post(addr, "/logout", "").await.body, "logged out");
        prefix.clean().await;
        assert!(prefix.keys().await.is_empty());
    }
    // Two random keys share a slot once in 16384 logins, a node once in three.
    assert!(across_slots >= 9, "{across_slots} of 10 logins changed slots");
    assert!(across_nodes >= 1, "{across_nodes} of 10 logins changed nodes");
}

// ---------------------------------------------------------------------------
// 3. a master goes down: a private cluster of our own

/// A 3-master Redis Cluster this test started on free loopback ports, one
/// directory per node in a temporary directory; killed when dropped.
struct PrivateCluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<tokio::process::Child>>,
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        if port < 50000
            && !taken.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
}

impl PrivateCluster {
    /// Starts the nodes and creates the cluster, or `None` (the skip rule)
    /// when `redis-server` or `redis-cli` cannot be run.
    async fn start() -> Option<PrivateCluster> {
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push(free_port(&ports));
        }
        let mut cluster = PrivateCluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            children: (0..3).map(|_| None).collect(),
            ports,
        };
        for i in 0..3 {
            if let Err(err) = cluster.spawn(i).await {
                cluster_unavailable(format_args!("cannot start redis-server: {err}"));
                return None;
            }
        }
        let create = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match create {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(err) => {
                cluster_unavailable(format_args!("cannot run redis-cli: {err}"));
                return None;
            }
        }
        cluster.wait_ok().await;
        Some(cluster)
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Starts node `i` (again), from its directory and `nodes.conf`.
    async fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let port = self.ports[i];
        let dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join("nodes.conf"))
            .args([
                "--cluster-node-timeout",
                "1000",
                "--cluster-require-full-coverage",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.children[i] = Some(child);
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = redis::Client::open(url.as_str()).expect("a valid URL");
            match client.get_multiplexed_async_connection().await {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(err) => return Err(std::io::Error::other(err)),
            }
        }
    }

    /// Waits (up to 30 s) until every node says `cluster_state:ok`.
    async fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in self.urls() {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node(&url).await)
                    .await
                    .expect("CLUSTER INFO");
                if info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{url} never reached cluster_state:ok:\n{info}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Writes a snapshot of node `i` (so its restart brings the sessions
    /// back), then kills it without letting it shut down.
    async fn crash(&mut self, i: usize) {
        let url = &self.urls()[i];
        let _: () = redis::cmd("SAVE")
            .query_async(&mut node(url).await)
            .await
            .expect("SAVE");
        let mut child = self.children[i].take().expect("the node runs");
        child.kill().await.expect("kill redis-server");
        let client = redis::Client::open(url.as_str()).expect("a valid URL");
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "the node is down"
        );
    }

    /// Sends `SIG{signal}` to node `i`.
    async fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i]
            .as_ref()
            .and_then(|c| c.id())
            .expect("the node runs");
        let status = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

/// How the test takes a master away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Failure {
    /// Killed (after a snapshot), then started again on its port.
    Down,
    /// Stopped (`SIGSTOP`): connections open, no answers; then `SIGCONT`.
    Hung,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_down_fails_its_sessions_only_and_recovers() {
    a_master_fails(Failure::Down).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_fails_its_sessions_within_the_timeouts_and_recovers() {
    a_master_fails(Failure::Hung).await;
}

/// Sessions on every node of a private cluster; one master fails: requests
/// for its sessions answer 500 within the timeouts and leave the cookie
/// alone, the others keep working (even after the live nodes forget the
/// store's scripts); when the master is back, every session works again.
async fn a_master_fails(failure: Failure) {
    let Some(mut cluster) = PrivateCluster::start().await else {
        return;
    };
    let urls = cluster.urls();
    let prefix = Prefix::new(&urls);
    let store_timeout = Duration::from_secs(2);
    let bound = store_timeout + Duration::from_secs(2);
    let addr = serve(app(prefix.store(), store_timeout)).await;

    // Visitors until every node holds a session, each visitor's node noted.
    let mut visitors: Vec<(Client, usize)> = Vec::new();
    let mut known = HashSet::new();
    for _ in 0..100 {
        if (0..3).all(|n| visitors.iter().any(|(_, at)| *at == n)) {
            break;
        }
        let mut client = Client::default();
        assert_eq!(client.get(addr, "/").await.body, "count: 1");
        let (key, at) = prefix
            .keys()
            .await
            .into_iter()
            .find(|(key, _)| !known.contains(key))
            .expect("the new session's key");
        known.insert(key);
        visitors.push((client, at));
    }
    let victim = 0;
    assert!(visitors.iter().any(|(_, at)| *at == victim));
    assert!(visitors.iter().any(|(_, at)| *at != victim));

    match failure {
        Failure::Down => cluster.crash(victim).await,
        Failure::Hung => cluster.signal(victim, "STOP").await,
    }

    for round in 0..3 {
        if round == 2 {
            // The nodes that are up forget the store's scripts: a save must
            // still work there, though loading a script on every node fails
            // while one is down.
            for url in &urls[1..] {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut node(url).await)
                    .await
                    .expect("SCRIPT FLUSH");
            }
        }
        for (client, at) in &mut visitors {
            let cookie = client.cookie.clone();
            let started = Instant::now();
            let reply = tokio::time::timeout(bound, client.get(addr, "/"))
                .await
                .unwrap_or_else(|_| {
                    panic!("round {round}: a request took longer than {bound:?} with a master {failure:?}")
                });
            if *at == victim {
                assert_eq!(
                    reply.status,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "round {round}: a session on the {failure:?} node: {}",
                    reply.body
                );
                assert_eq!(reply.body, "session store unavailable\n");
                assert!(
                    reply.set_cookies.is_empty(),
                    "the cookie is untouched: {:?}",
                    reply.set_cookies
                );
                assert_eq!(client.cookie, cookie);
                // The store's own timeouts (500 ms a command) end the call,
                // well before the layer's store timeout.
                assert!(
                    started.elapsed() < store_timeout,
                    "round {round}: {:?} for a session on the {failure:?} node",
                    started.elapsed()
                );
            } else {
                assert_eq!(
                    (reply.status, reply.body.clone()),
                    (StatusCode::OK, format!("count: {}", round + 2)),
                    "round {round}: a session on a node that is up keeps working"
                );
            }
            assert!(started.elapsed() < bound);
        }
    }

    match failure {
        // The node comes back on its port, from its nodes.conf and snapshot.
        Failure::Down => cluster.spawn(victim).await.expect("restart the node"),
        Failure::Hung => cluster.signal(victim, "CONT").await,
    }
    cluster.wait_ok().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (client, at) in &mut visitors {
        let want = if *at == victim { "count: 2" } else { "count: 5" };
        let reply = loop {
            let reply = tokio::time::timeout(bound, client.get(addr, "/"))
                .await
                .expect("no request hangs while the node comes back");
            if reply.status == StatusCode::OK || Instant::now() > deadline {
                break reply;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, want));
        let reply = client.post(addr, "/login", "user=bob").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "logged in as bob")
        );
        assert_eq!(client.get(addr, "/whoami").await.body, "bob");
    }
}
