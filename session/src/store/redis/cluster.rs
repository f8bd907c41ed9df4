//! `RedisStore` on Redis Cluster (feature `redis-cluster`): the
//! [`RedisStore::cluster`] constructor, its builder, and the lazily made
//! cluster connection behind them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind, Value,
};
use tokio::sync::OnceCell;

use super::{Conn, Connections, RedisStore, CYCLE_SCRIPT, DEFAULT_PREFIX, SAVE_SCRIPT, TAKE_SCRIPT};
use crate::error::StoreError;

/// The cluster settings unless the builder changes them: as for one server,
/// 1 s to connect to a node and 500 ms for an answer, retries (redirects,
/// reconnections) included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisStore {
    /// A store on the Redis Cluster reached through the seed nodes `nodes`
    /// (URLs such as `redis://10.0.0.1:6379`; one reachable node is enough,
    /// the others are discovered), with the default key prefix and timeouts.
    /// Needs the `redis-cluster` feature.
    ///
    /// Nothing is sent yet: the store connects to the cluster on first use,
    /// and tries again on the next call when that fails. See
    /// [Redis Cluster](RedisStore#redis-cluster) for what is and is not
    /// atomic on a cluster.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = carafe::store::RedisStore::cluster([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])?;
    /// store.ping().await?; // optional: fail at startup rather than on the first request
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a URL is not a valid Redis URL or
    /// `nodes` is empty.
    pub fn cluster<I, S>(nodes: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::cluster_builder(nodes).build()
    }

    /// A builder for a store on the Redis Cluster reached through `nodes`,
    /// to set the key prefix, the timeouts and the record limit. Needs the
    /// `redis-cluster` feature.
    ///
    /// ```
    /// use std::time::Duration;
    /// let store = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
    ///     .prefix("shop:session")
    ///     .response_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// assert_eq!(store.prefix(), "shop:session");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    pub fn cluster_builder<I, S>(nodes: I) -> RedisClusterBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisClusterBuilder {
            nodes: nodes.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connection_timeout: CONNECTION_TIMEOUT,
            response_timeout: RESPONSE_TIMEOUT,
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Builds a [`RedisStore`] on a Redis Cluster (feature `redis-cluster`):
/// see [`RedisStore::cluster_builder`].
///
/// ```
/// let store = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
///     .max_record_bytes(64 * 1024)
///     .build()?;
/// assert_eq!(store.record_limit(), 64 * 1024);
/// # Ok::<(), carafe::StoreError>(())
/// ```
#[must_use]
pub struct RedisClusterBuilder {
    nodes: Vec<String>,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
    max_record_bytes: usize,
}

impl fmt::Debug for RedisClusterBuilder {
    // The URLs are left out on purpose: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterBuilder")
            .field("nodes", &self.nodes.len())
            .field("prefix", &self.prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish()
    }
}

impl RedisClusterBuilder {
    /// The key prefix: records live at `{prefix}:{store key}` (default
    /// [`RedisStore::DEFAULT_PREFIX`]).
    ///
    /// ```
    /// let store = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
    ///     .prefix("blog:session")
    ///     .build()?;
    /// assert_eq!(store.prefix(), "blog:session");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt to a node may take (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
    ///     .connection_timeout(Duration::from_millis(300));
    /// # let _ = builder;
    /// ```
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one command may take, the cluster client's redirections
    /// and reconnections included (default 500 ms). A call to a node that is
    /// down fails after at most this long.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
    ///     .response_timeout(Duration::from_secs(2));
    /// # let _ = builder;
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The largest record the store writes or reads (default 4 MiB): see
    /// [`RedisStore::max_record_bytes`].
    ///
    /// ```
    /// let builder = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"])
    ///     .max_record_bytes(64 * 1024);
    /// # let _ = builder;
    /// ```
    pub fn max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// Builds the store. It connects on first use, not now.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::cluster_builder(["redis://127.0.0.1:7001"]).build()?;
    /// # let _ = store;
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a URL is not a valid Redis URL or there
    /// is none.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let client = ClusterClientBuilder::new(self.nodes)
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.response_timeout)
            .build()
            .map_err(StoreError::backend)?;
        let connections = LazyCluster(Arc::new(Shared {
            client,
            connection: OnceCell::new(),
            scripts: scripts(),
        }));
        Ok(RedisStore::with_connections(self.prefix, Arc::new(connections))
            .max_record_bytes(self.max_record_bytes))
    }
}

/// The store's scripts and their SHA-1s.
fn scripts() -> [(String, &'static str); 3] {
    [SAVE_SCRIPT, CYCLE_SCRIPT, TAKE_SCRIPT].map(|source| (Script::new(source).get_hash().to_owned(), source))
}

/// The store's cluster connection, made on the first command.
struct LazyCluster(Arc<Shared>);

struct Shared {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
    /// The store's scripts, by SHA-1, to send in full to a node that does
    /// not know one (see [`ClusterConn`]).
    scripts: [(String, &'static str); 3],
}

impl Connections for LazyCluster {
    fn get(&self) -> RedisResult<Conn> {
        Ok(Conn(Box::new(ClusterConn(Arc::clone(&self.0)))))
    }

    fn describe(&self) -> &'static str {
        "cluster connection"
    }
}

/// One call's handle on the cluster connection.
///
/// A node that does not know a script (`NOSCRIPT`: it restarted, or never
/// ran it) gets it in full: the `EVALSHA` is sent again as an `EVAL`, routed
/// by the same key. The `redis` crate would send `SCRIPT LOAD` to every
/// node instead, which fails while any node is down, even for sessions
/// that live on the nodes that are up.
struct ClusterConn(Arc<Shared>);

impl Shared {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisError::from((
                ErrorKind::Client,
                "the Redis session store must be used from within a tokio runtime",
            )));
        }
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }

    /// `cmd` as an `EVAL` of the script's source, when it is an `EVALSHA`
    /// of one of the store's scripts.
    fn as_eval(&self, cmd: &Cmd) -> Option<Cmd> {
        let mut args = cmd.args_iter();
        let (Some(Arg::Simple(name)), Some(Arg::Simple(sha))) = (args.next(), args.next()) else {
            return None;
        };
        if !name.eq_ignore_ascii_case(b"EVALSHA") {
            return None;
        }
        let (_, source) = self.scripts.iter().find(|(hash, _)| hash.as_bytes() == sha)?;
        let mut eval = redis::cmd("EVAL");
        eval.arg(*source);
        for arg in args {
            match arg {
                Arg::Simple(bytes) => eval.arg(bytes),
                _ => return None,
            };
        }
        Some(eval)
    }
}

impl ConnectionLike for ClusterConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut connection = self.0.connection().await?;
            let answer = connection.req_packed_command(cmd).await;
            // A server error is an answer here (`Value::ServerError`); it
            // becomes an `Err` later, in `query_async`.
            let no_script = match &answer {
                Ok(Value::ServerError(err)) => err.kind() == Some(ServerErrorKind::NoScript),
                Err(err) => err.kind() == ErrorKind::Server(ServerErrorKind::NoScript),
                Ok(_) => false,
            };
            match self.0.as_eval(cmd) {
                Some(eval) if no_script => connection.req_packed_command(&eval).await,
                _ => answer,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut connection = self.0.connection().await?;
            connection.req_packed_commands(pipeline, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_is_rewritten_as_an_eval_of_its_source() {
        let shared = Shared {
            client: ClusterClient::new(vec!["redis://127.0.0.1:1"]).expect("valid URL"),
            connection: OnceCell::new(),
            scripts: scripts(),
        };
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(Script::new(SAVE_SCRIPT).get_hash())
            .arg(1)
            .arg("k")
            .arg("create")
            .arg(7);
        let eval = shared.as_eval(&evalsha).expect("one of the store's scripts");
        let args: Vec<Vec<u8>> = eval
            .args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let expected: Vec<&[u8]> = vec![b"EVAL", SAVE_SCRIPT.as_bytes(), b"1", b"k", b"create", b"7"];
        assert_eq!(args, expected);
        let mut other = redis::cmd("EVALSHA");
        other.arg("0000000000000000000000000000000000000000").arg(0);
        assert!(shared.as_eval(&other).is_none());
        assert!(shared.as_eval(&redis::cmd("GET")).is_none());
    }

    #[test]
    fn the_builder_hides_the_urls_and_refuses_no_nodes() {
        let builder = RedisStore::cluster_builder(["redis://:hunter2@127.0.0.1:7001"]);
        assert!(!format!("{builder:?}").contains("hunter2"));
        let store = builder.build().expect("valid URL");
        assert!(!format!("{store:?}").contains("hunter2"));
        assert!(matches!(
            RedisStore::cluster(Vec::<String>::new()),
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(
            RedisStore::cluster(["not a url"]),
            Err(StoreError::Backend(_))
        ));
    }
}
