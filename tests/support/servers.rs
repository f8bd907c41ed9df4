//! The Redis and PostgreSQL servers the store tests and benchmarks talk to,
//! and what happens when there is none: a test prints one
//! `skipped: no Redis at URL` (or `no PostgreSQL`) line and passes, unless
//! `CI=true`, where an unreachable server fails the run.
//!
//! Also used by the benchmarks (`#[path]`), so it depends on nothing else in
//! `support`.
#![allow(dead_code)]

use std::fmt::Display;
use std::io;

/// Where the Redis tests look unless `CARAFE_REDIS_URL` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Where the PostgreSQL tests look unless `CARAFE_POSTGRES_URL` says
/// otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `CARAFE_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("CARAFE_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// `CARAFE_POSTGRES_URL`, or the local default.
pub fn postgres_url() -> String {
    std::env::var("CARAFE_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Whether this is a CI run (`CI=true`), where a missing server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL without a password, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Prints `skipped: {reason}`. Written to the process's stdout rather than
/// with `println!`, which the test harness captures for passing tests, so
/// the line shows up in a plain `cargo test` run.
pub fn skipped(reason: impl Display) {
    use std::io::Write;
    let _ = writeln!(io::stdout().lock(), "skipped: {reason}");
}

/// Prints `skipped: no {server} at {url}` (without a password).
pub fn skip(server: &str, url: &str) {
    skipped(format_args!("no {server} at {}", redacted(url)));
}

/// The outcome of reaching `server` at `url`: the value when it answered;
/// otherwise a panic under `CI=true`, or the skip line and `None`.
pub fn available<T, E: Display>(server: &str, url: &str, attempt: Result<T, E>) -> Option<T> {
    match attempt {
        Ok(value) => Some(value),
        Err(err) if in_ci() => panic!("no {server} at {} ({err}) and CI=true", redacted(url)),
        Err(_) => {
            skip(server, url);
            None
        }
    }
}

/// The parts of a `redis://[[user]:password@]host[:port][/db]` URL.
pub struct RedisUrl {
    pub userinfo: Option<String>,
    /// `host:port`
    pub host: String,
    pub db: String,
}

impl RedisUrl {
    pub fn parse(url: &str) -> io::Result<RedisUrl> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("not a redis:// URL: {url}"))
        })?;
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo.to_owned()), host),
            None => (None, authority),
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let host = if has_port && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:6379")
        };
        let db = db.split('?').next().unwrap_or_default().to_owned();
        Ok(RedisUrl { userinfo, host, db })
    }

    /// The same URL with another `host:port`.
    pub fn with_host(&self, host: &str) -> String {
        let userinfo = self
            .userinfo
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("redis://{userinfo}{host}/{}", self.db)
    }
}

/// Whether the Redis Cluster tests must run (`CARAFE_REQUIRE_CLUSTER=1`, as
/// `.ci/run` sets): then a missing cluster is a failure, not a skip.
pub fn cluster_required() -> bool {
    std::env::var("CARAFE_REQUIRE_CLUSTER").is_ok_and(|v| v == "1")
}

/// The seed URLs of the Redis Cluster in `CARAFE_REDIS_CLUSTER`
/// (comma-separated), or `None` after printing `SKIPPED: ...` when it is
/// unset (a panic under `CARAFE_REQUIRE_CLUSTER=1`).
pub fn redis_cluster_nodes() -> Option<Vec<String>> {
    let nodes: Vec<String> = std::env::var("CARAFE_REDIS_CLUSTER")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if !nodes.is_empty() {
        return Some(nodes);
    }
    cluster_unavailable("CARAFE_REDIS_CLUSTER is not set");
    None
}

/// Prints `SKIPPED: no Redis Cluster ({why})`, or panics under
/// `CARAFE_REQUIRE_CLUSTER=1`.
pub fn cluster_unavailable(why: impl Display) {
    if cluster_required() {
        panic!("no Redis Cluster ({why}) and CARAFE_REQUIRE_CLUSTER=1");
    }
    use std::io::Write;
    let _ = writeln!(io::stdout().lock(), "SKIPPED: no Redis Cluster ({why})");
}
