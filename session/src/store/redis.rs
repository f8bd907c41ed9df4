//! A store on Redis, for applications that run on several servers: see
//! [`RedisStore`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Script, ScriptInvocation, Value};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::{Change, Data, Record, SaveKind, SaveOutcome};
use crate::store::SessionStore;

#[cfg(feature = "redis-cluster")]
mod cluster;
#[cfg(feature = "redis-cluster")]
pub use cluster::RedisClusterBuilder;
mod owners;

/// The key prefix used unless the builder sets another.
const DEFAULT_PREFIX: &str = "carafe:session";

/// The hash field prefix of session keys.
const DATA: &str = "d:";
/// The metadata fields.
const CREATED: &str = "m:created";
const ACCESSED: &str = "m:accessed";
const EXPIRES: &str = "m:expires";

/// The start of the save and cycle scripts: `size_after(key, at)` is the
/// size the hash at `key` would have after the change in `ARGV[at ..]` (see
/// [`change_args`]): the sum of the byte lengths of its field names and
/// values, the fields the change removes or sets left out and the fields it
/// sets counted at their new length. `HKEYS` and one `HSTRLEN` per kept
/// field: no value is read into the script.
macro_rules! size_after_lua {
    () => {
        r"
local function size_after(key, at)
  local changed = {}
  local removed = tonumber(ARGV[at])
  for i = at + 1, at + removed do changed[ARGV[i]] = false end
  for i = at + 1 + removed, #ARGV, 2 do changed[ARGV[i]] = #ARGV[i + 1] end
  local size = 0
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if changed[field] == nil then
      size = size + #field + redis.call('HSTRLEN', key, field)
    end
  end
  for field, len in pairs(changed) do
    if len then size = size + #field + len end
  end
  return size
end
"
    };
}

/// The end of the save and cycle scripts: writes a change to the hash at
/// `key`. `ARGV[at]` is the number `n` of removed fields, `ARGV[at+1 ..
/// at+n]` those fields, the rest field/value pairs to set, `ARGV[at-1]` the
/// expiry in unix milliseconds and `ARGV[at-2]` the record limit (see
/// [`change_args`]). Commands take at most 1000 arguments at a time, well
/// under Lua's limit for `unpack`. Answers 1, or `{1, owner}` when the
/// hash names an owner (see [`owners`]).
macro_rules! write_change_lua {
    () => {
        r"
local function batch(cmd, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local removed = tonumber(ARGV[at])
batch('HDEL', at + 1, at + removed)
batch('HSET', at + 1 + removed, #ARGV)
redis.call('PEXPIREAT', key, ARGV[at - 1])
local owner = redis.call('HGET', key, 'd:carafe.owner')
if owner then return {1, owner} end
return 1
"
    };
}

/// The save script.
///
/// `KEYS[1]` is the session's hash. `ARGV[1]` is `"create"` or `"update"`,
/// `ARGV[2]` the record limit in bytes, `ARGV[3]` the expiry in unix
/// milliseconds, `ARGV[4]` the number `n` of removed fields, `ARGV[5 ..
/// 4+n]` those fields, and the rest field/value pairs to set.
///
/// Answers 1 (saved), 0 (update of a missing record: nothing written), -1
/// (create over an existing record: nothing written) or `{-3, size}` (the
/// hash would be `size` bytes, over the limit: nothing written).
const SAVE_SCRIPT: &str = concat!(
    size_after_lua!(),
    r"
local key, at = KEYS[1], 4
local exists = redis.call('EXISTS', key) == 1
if ARGV[1] == 'create' then
  if exists then return -1 end
elseif not exists then
  return 0
end
local size = size_after(key, at)
if size > tonumber(ARGV[at - 2]) then return {-3, size} end
",
    write_change_lua!()
);

/// The cycle script: moves a session's hash to a new key.
///
/// `KEYS[1]` is the hash to move, `KEYS[2]` its new key. `ARGV[1]` is the
/// record limit in bytes, `ARGV[2]` the expiry in unix milliseconds,
/// `ARGV[3]` the number `n` of removed fields, `ARGV[4 .. 3+n]` those
/// fields, and the rest field/value pairs to set.
///
/// Answers 1 (moved), 0 (nothing under `KEYS[1]`: nothing written), -1
/// (`KEYS[2]` taken: nothing written), -2 (`KEYS[1]` is not a hash:
/// nothing written) or `{-3, size}` (the merged hash would be over the
/// limit: nothing written).
const CYCLE_SCRIPT: &str = concat!(
    size_after_lua!(),
    r"
local from, to = KEYS[1], KEYS[2]
if redis.call('EXISTS', to) == 1 then return -1 end
if redis.call('EXISTS', from) == 0 then return 0 end
if redis.call('TYPE', from).ok ~= 'hash' then return -2 end
local at = 3
local size = size_after(from, at)
if size > tonumber(ARGV[at - 2]) then return {-3, size} end
redis.call('RENAME', from, to)
local key = to
",
    write_change_lua!()
);

/// The take script, for a cycle whose two keys live in different Redis
/// Cluster slots: answers the hash at `KEYS[1]` (`HGETALL`) and deletes it,
/// in one step. Answers nil when there is no such key and -2 when it is not
/// a hash (then nothing is deleted).
const TAKE_SCRIPT: &str = r"
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
if redis.call('TYPE', key).ok ~= 'hash' then return -2 end
local all = redis.call('HGETALL', key)
redis.call('DEL', key)
return all
";

/// The take-fields script, for flash messages: removes the data fields of
/// the hash at `KEYS[1]` whose names start with `ARGV[1]` (`d:` and the
/// prefix) and answers them as field/value pairs, in one step. Only the
/// hash's field names are scanned (`HKEYS`); only matching values are read.
/// Answers an empty array when there is no such key or no such field, and
/// -2 when the key does not hold a hash (then nothing is removed).
const TAKE_FIELDS_SCRIPT: &str = r"
local key, prefix = KEYS[1], ARGV[1]
local kind = redis.call('TYPE', key).ok
if kind == 'none' then return {} end
if kind ~= 'hash' then return -2 end
local out = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, #prefix) == prefix then
    out[#out + 1] = field
    out[#out + 1] = redis.call('HGET', key, field)
    redis.call('HDEL', key, field)
  end
end
return out
";

/// Sessions in Redis: one hash per session, partial writes, expiry by
/// Redis' own TTL. Clones share one connection.
///
/// # Layout
///
/// Each session is one Redis hash at `{prefix}:{store key}` (the prefix
/// defaults to `carafe:session`; the store key is the SHA-256 of the session
/// id, see [`StoreKey`]). The hash holds one field per session key and three
/// metadata fields:
///
/// | field | holds |
/// |---|---|
/// | `d:{key}` | the value of session key `key`, as JSON |
/// | `m:created` | creation time, unix seconds (`1700000000` or `1700000000.5`) |
/// | `m:accessed` | last accessed time, same form |
/// | `m:expires` | expiry time, same form |
///
/// User keys live under `d:` and metadata under `m:`, so no session key can
/// overwrite the metadata.
///
/// # Partial writes
///
/// A save runs one Lua script (`EVALSHA`), so it is atomic: it writes only
/// the keys the request changed (`HSET`) and removed (`HDEL`), the metadata,
/// and the key's TTL (`PEXPIREAT` at the session's expiry). An update that
/// only refreshes the accessed time writes two metadata fields and the TTL,
/// never the data. Two overlapping requests that change different keys both
/// keep their changes; for the same key the last write wins.
///
/// # Record size limit
///
/// The limit ([`max_record_bytes`](RedisStore::max_record_bytes), default
/// 4 MiB) counts the hash: the sum of the byte lengths of its field names
/// and values, the `d:` prefixes and the metadata included. The save and
/// cycle scripts check it before they write, with no extra round trip: they
/// sum `HSTRLEN` over the fields the change keeps (`HKEYS`, no value is
/// read) and add the new fields' lengths, and answer "too large" without
/// writing when the sum is over the limit, so the check sees the hash as it
/// is at that moment (scripts run one at a time). A save is then
/// [`StoreError::TooLarge`] and the hash is left as it was. A hash larger
/// than the limit loads as [`StoreError::Corrupt`] (a fresh session, with a
/// warning naming the store and the size). On Redis Cluster's two-step
/// cycle the merged size is checked between the steps, and a hash too large
/// to move is put back under its old key.
///
/// # Expiry
///
/// Redis expires the hash itself at the session's expiry time, so nothing
/// needs reaping: [`delete_expired`](SessionStore::delete_expired) returns
/// `Ok(0)` without touching the server. A save whose expiry is already past
/// leaves no record behind.
///
/// # New ids
///
/// A [`cycle`](SessionStore::cycle) (a new session id, at login) is one Lua
/// script over the old and the new key: it checks that the new key is free
/// and the old one exists, `RENAME`s the hash, applies the change (`HDEL`,
/// `HSET`) and sets the TTL. A logout (`DEL` of the old key) or an update
/// of the old key that overlaps it runs wholly before or after it, so a
/// deleted session is never brought back under the new id.
///
/// # Redis Cluster
///
/// Every command and script but a cycle touches exactly one key, the
/// session's hash, so the layout works unchanged on Redis Cluster: build the
/// store with `RedisStore::cluster(["redis://node1:6379", ...])` (feature
/// `redis-cluster`; or `RedisStore::cluster_builder` for the prefix and
/// timeouts), or with [`RedisStore::from_connection`] over a cluster
/// connection of your own. carafe's tests run the conformance suite, the
/// overlapping-writes property and node failures against a real 3-master
/// cluster.
///
/// While a master is down or hung, the sessions whose keys live on it fail
/// (the layer answers 500 and leaves the cookie alone) within the
/// response timeout; the sessions on the other masters keep working if the
/// cluster still serves the slots it has (`cluster-require-full-coverage
/// no`; with the default `yes` the whole cluster refuses requests once the
/// failure is detected). With `RedisStore::cluster`, a node that does not
/// know the store's scripts (it restarted, or flushed them) gets the script
/// in full on that call, rather than by a `SCRIPT LOAD` sent to every
/// node, which fails while any node is down.
///
/// A cycle touches two keys, `{prefix}:{old store key}` and
/// `{prefix}:{new store key}`. The keys carry no hash tag (a shared tag
/// would put every session in one slot), so on a cluster they almost always
/// hash to different slots, where no script may touch both: the server
/// refuses the cycle script with `CROSSSLOT`. The store then falls back to
/// two steps, **which are not one atomic step**:
///
/// 1. a script on the old key reads the hash and deletes it in one step
///    (nothing there: the answer is [`SaveOutcome::Missing`]);
/// 2. the merged record is created under the new key (after checking first,
///    with `EXISTS`, that it is free).
///
/// A logout or update of the old key still lands wholly before step 1 (its
/// effect is moved, or the cycle answers `Missing`) or after it (it finds
/// nothing), so a deleted session is not brought back and no saved change is
/// lost. But between the steps the record is under neither key, and if step
/// 2 fails (the connection drops, the store call times out) the session is
/// gone: the user has to log in again. The store fails closed rather than
/// open.
///
/// # A user's sessions
///
/// Each owner ([`Session::set_owner`](crate::Session::set_owner)) has an
/// index, the sorted set `{prefix}:owner:{SHA-256 of the owner}`, whose
/// members are the store keys of its sessions scored by their expiry
/// (unix milliseconds); the set expires with its last member. On Redis
/// Cluster the index is in another slot than the sessions, so it is never
/// written in the same script as a session: the save and cycle scripts
/// answer the owner the hash holds, and a second script on the index alone
/// files the key with its new expiry. The hash stays the truth:
/// [`list_owned`](SessionStore::list_owned) drops the members scored at or
/// before now (`ZREMRANGEBYSCORE`), reads each remaining session's owner and
/// timestamps (`HMGET`) and drops the members whose hash is gone, names
/// another owner or has expired, so a stale entry never brings a session
/// back. A delete takes the key out of the index. If the index write fails
/// after the session was written, the save answers the error (the request
/// fails). The session itself is written by then, so its index entry may
/// keep the old expiry until its next successful save: if that old expiry
/// passes first, the session is missing from its owner's list (and from
/// "revoke all others") until then. On Redis Cluster, a revoke that runs
/// between the two steps of a cross-slot cycle finds the session under
/// neither key and misses it (see [Redis Cluster](RedisStore#redis-cluster)).
///
/// # Connections and failures
///
/// [`RedisStore::new`] and [`RedisStoreBuilder::build`] do not connect: the
/// store connects on first use, through a
/// [`ConnectionManager`] that reconnects by itself after a server restart.
/// An application therefore starts even while Redis is down; its session
/// routes answer 500 until Redis is back, and the routes that never touch the
/// session are not affected. Call [`RedisStore::ping`] at startup to fail
/// fast instead. Connection attempts and responses are bounded by the
/// timeouts set on the builder (by default 1 s to connect and 500 ms for a
/// response, the `redis` crate's defaults). A lost connection is retried
/// three times within a few hundred milliseconds; after that the store call
/// fails and the next one tries again, so while Redis is down session routes
/// fail fast instead of queueing. The session layer bounds every store call
/// with its own `store_timeout` on top.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use carafe::store::RedisStore;
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// store.ping().await?; // optional: fail at startup rather than on the first request
/// let layer = carafe::SessionLayer::builder(store)
///     .secret(b"a secret of at least thirty-two bytes, from the environment")
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    prefix: Arc<str>,
    connections: Arc<dyn Connections>,
    script: Arc<Script>,
    cycle_script: Arc<Script>,
    take_script: Arc<Script>,
    take_fields_script: Arc<Script>,
    index_script: Arc<Script>,
    delete_script: Arc<Script>,
    max_record_bytes: usize,
}

impl fmt::Debug for RedisStore {
    // The URL is left out on purpose: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connection", &self.connections.describe())
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix used unless another is set: `carafe:session`.
    pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

    /// A store on the Redis server at `url` (such as
    /// `redis://127.0.0.1:6379`, `redis://:password@host:6379/2` or
    /// `redis+unix:///run/redis.sock`), with the default key prefix and
    /// timeouts. (`rediss://` URLs need one of the `redis` crate's TLS
    /// features, enabled in your own `Cargo.toml`.)
    ///
    /// Nothing is sent to the server yet: the store connects on first use,
    /// so an application can start while Redis is down (see
    /// [connections and failures](RedisStore#connections-and-failures)).
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?;
    /// assert_eq!(store.prefix(), "carafe:session");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when `url` is not a valid Redis URL.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the Redis server at `url`, to set the key
    /// prefix and the connection timeouts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let store = carafe::store::RedisStore::builder("redis://127.0.0.1:6379")
    ///     .prefix("myapp:session")
    ///     .connection_timeout(Duration::from_secs(2))
    ///     .response_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// assert_eq!(store.prefix(), "myapp:session");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            source: Source::Url(url.into()),
            prefix: DEFAULT_PREFIX.to_owned(),
            config: default_manager_config(),
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// A store over an existing [`ConnectionManager`], with the default key
    /// prefix (change it with [`with_prefix`](Self::with_prefix)).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = redis::aio::ConnectionManager::new(client).await?;
    /// let store = carafe::store::RedisStore::from_manager(manager).with_prefix("myapp:session");
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self::from_connection(manager)
    }

    /// A store over any cloneable asynchronous Redis connection, such as a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection) or a
    /// Redis Cluster connection (`redis::cluster_async::ClusterConnection`,
    /// with the `redis` crate's `cluster-async` feature). The connection is
    /// cloned for every store call, as these connections expect.
    ///
    /// Whether the store reconnects after a failure is up to the connection:
    /// a [`ConnectionManager`] and a cluster connection do, a bare
    /// `MultiplexedConnection` does not.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let connection = client.get_multiplexed_async_connection().await?;
    /// let store = carafe::store::RedisStore::from_connection(connection);
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn from_connection<C>(connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::with_connections(DEFAULT_PREFIX.to_owned(), Arc::new(Given(connection)))
    }

    /// The same store with another key prefix: records live at
    /// `{prefix}:{store key}`.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?.with_prefix("app:s");
    /// assert_eq!(store.prefix(), "app:s");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The key prefix.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?;
    /// assert_eq!(store.prefix(), carafe::store::RedisStore::DEFAULT_PREFIX);
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key the record filed under `key` lives at:
    /// `{prefix}:{store key}`.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?;
    /// let key = carafe::SessionId::generate().store_key();
    /// assert_eq!(store.redis_key(&key), format!("carafe:session:{}", key.as_str()));
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    #[must_use]
    pub fn redis_key(&self, key: &StoreKey) -> String {
        format!("{}:{}", self.prefix, key.as_str())
    }

    /// Sends a `PING`, to check at startup (or in a readiness probe) that
    /// Redis answers.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), carafe::StoreError> {
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?;
    /// store.ping().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the server cannot be reached or does not
    /// answer `PONG`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        let answer: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(unexpected("unexpected answer to PING", answer))
        }
    }

    fn with_connections(prefix: String, connections: Arc<dyn Connections>) -> Self {
        RedisStore {
            prefix: Arc::from(prefix),
            connections,
            script: Arc::new(Script::new(SAVE_SCRIPT)),
            cycle_script: Arc::new(Script::new(CYCLE_SCRIPT)),
            take_script: Arc::new(Script::new(TAKE_SCRIPT)),
            take_fields_script: Arc::new(Script::new(TAKE_FIELDS_SCRIPT)),
            index_script: Arc::new(Script::new(owners::INDEX_SCRIPT)),
            delete_script: Arc::new(Script::new(owners::DELETE_SCRIPT)),
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Sets the largest record the store writes or reads: the sum of the
    /// byte lengths of the hash's field names and values, metadata included
    /// (default [`DEFAULT_MAX_RECORD_BYTES`](crate::store::DEFAULT_MAX_RECORD_BYTES),
    /// 4 MiB; see [Record size limit](RedisStore#record-size-limit)). A save
    /// or cycle whose resulting hash would be larger fails with
    /// [`StoreError::TooLarge`] and writes nothing; a larger hash loads as
    /// [`StoreError::Corrupt`], which the runtime treats as no session.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?.max_record_bytes(256 * 1024);
    /// assert_eq!(store.record_limit(), 256 * 1024);
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None here; the limit shows in the errors of
    /// [`save`](SessionStore::save) and [`cycle`](SessionStore::cycle).
    #[must_use]
    pub fn max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// The largest record the store writes or reads, in bytes (see
    /// [`RedisStore::max_record_bytes`]).
    ///
    /// ```
    /// let store = carafe::store::RedisStore::new("redis://127.0.0.1:6379")?;
    /// assert_eq!(store.record_limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    #[must_use]
    pub fn record_limit(&self) -> usize {
        self.max_record_bytes
    }

    /// The answer of the save or cycle script: its code, and the size when
    /// the code is -3 (too large).
    fn script_answer(&self, what: &'static str, reply: Value) -> Result<i64, StoreError> {
        match reply {
            Value::Int(code) => Ok(code),
            Value::Array(items) => match items.as_slice() {
                [Value::Int(-3), Value::Int(size)] => Err(StoreError::TooLarge {
                    size: usize::try_from(*size).unwrap_or(usize::MAX),
                    limit: self.max_record_bytes,
                }),
                _ => Err(unexpected(what, kind_of(&Value::Array(items)))),
            },
            other => Err(unexpected(what, kind_of(&other))),
        }
    }

    fn connection(&self) -> Result<Conn, StoreError> {
        self.connections.get().map_err(StoreError::backend)
    }

    /// The cycle for keys in different Redis Cluster slots: take the hash
    /// off `from` (read and delete in one script), then create the merged
    /// record under `to`. Not atomic; see [Redis Cluster](RedisStore#redis-cluster).
    async fn cycle_across_slots(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let to_key = self.redis_key(to);
        let mut conn = self.connection()?;
        let taken: i64 = redis::cmd("EXISTS")
            .arg(&to_key)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        if taken != 0 {
            return Err(StoreError::Conflict);
        }
        let reply: Value = self
            .take_script
            .key(self.redis_key(from))
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        let fields = match reply {
            Value::Nil => return Ok(SaveOutcome::Missing),
            Value::Int(-2) => {
                return Err(StoreError::Corrupt("the Redis key does not hold a hash".into()));
            }
            Value::Array(items) if items.is_empty() => return Ok(SaveOutcome::Missing),
            Value::Array(items) => items,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "the take script answered {}, not a hash",
                    kind_of(&other)
                )))
            }
        };
        // From here on the record is under neither key until the create.
        let original = fields.clone();
        let pairs = merge_fields(fields, change)?;
        let size: usize = pairs.iter().map(|(f, v)| f.len() + v.len()).sum();
        if size > self.max_record_bytes {
            // Too large: put the hash back as it was, with its TTL.
            let expires = original
                .chunks(2)
                .find(|pair| matches!(&pair[0], Value::BulkString(f) if f == EXPIRES.as_bytes()))
                .and_then(|pair| bytes(pair[1].clone()))
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|text| parse_timestamp(&text))
                .unwrap_or(change.expires);
            let mut restore = self.script.key(self.redis_key(from));
            restore
                .arg("create")
                .arg(usize::MAX)
                .arg(unix_millis(expires))
                .arg(0);
            for item in original {
                restore.arg(bytes(item).unwrap_or_default());
            }
            let _: Value = restore
                .invoke_async(&mut conn)
                .await
                .map_err(StoreError::backend)?;
            return Err(StoreError::TooLarge {
                size,
                limit: self.max_record_bytes,
            });
        }
        let mut invocation = self.script.key(to_key);
        invocation
            .arg("create")
            .arg(self.max_record_bytes)
            .arg(unix_millis(change.expires))
            .arg(0);
        for (field, value) in pairs {
            invocation.arg(field).arg(value);
        }
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .inspect_err(|err| {
                tracing::warn!(store = "redis", key = %from.short(), error = %err, "cycle across cluster slots: the session was taken off its old key and could not be written under the new one; it is lost");
            })
            .map_err(StoreError::backend)?;
        let (reply, owner) = owners::split_owner(reply);
        match self.script_answer("unexpected answer from the save script", reply)? {
            1 => {
                if let Some(owner) = owner {
                    self.index(&owner, to, Some(from), change.expires).await?;
                }
                Ok(SaveOutcome::Saved)
            }
            -1 => Err(StoreError::Conflict),
            other => Err(unexpected("unexpected answer from the save script", other)),
        }
    }
}

/// Hash fields and their values, as bytes.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The fields of a taken hash with `change` merged in, as the cycle script
/// merges: removed and set data fields replaced, `m:accessed` and
/// `m:expires` replaced, every other field (`m:created` among them) kept
/// byte for byte.
fn merge_fields(items: Vec<Value>, change: &Change) -> Result<Fields, StoreError> {
    if items.len() % 2 != 0 {
        return Err(StoreError::Corrupt(
            "HGETALL answered an odd number of items".into(),
        ));
    }
    let mut replaced: std::collections::HashSet<Vec<u8>> = change
        .removed
        .iter()
        .chain(change.set.keys())
        .map(|name| data_field(name).into_bytes())
        .collect();
    replaced.insert(ACCESSED.as_bytes().to_vec());
    replaced.insert(EXPIRES.as_bytes().to_vec());
    let mut pairs = Vec::with_capacity(items.len() / 2 + change.set.len() + 2);
    let mut items = items.into_iter();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        let (Some(field), Some(value)) = (bytes(field), bytes(value)) else {
            return Err(StoreError::Corrupt(
                "a hash field or value is not a string".into(),
            ));
        };
        if !replaced.contains(&field) {
            pairs.push((field, value));
        }
    }
    for (name, value) in &change.set {
        let json = serde_json::to_vec(value).map_err(StoreError::backend)?;
        pairs.push((data_field(name).into_bytes(), json));
    }
    pairs.push((
        ACCESSED.as_bytes().to_vec(),
        timestamp(change.accessed).into_bytes(),
    ));
    pairs.push((
        EXPIRES.as_bytes().to_vec(),
        timestamp(change.expires).into_bytes(),
    ));
    Ok(pairs)
}

/// Builds a [`RedisStore`]: the key prefix and the connection settings.
///
/// ```
/// use std::time::Duration;
/// let store = carafe::store::RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("shop:session")
///     .connection_timeout(Duration::from_millis(500))
///     .build()?;
/// # let _ = store;
/// # Ok::<(), carafe::StoreError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    config: ConnectionManagerConfig,
    max_record_bytes: usize,
}

enum Source {
    Url(String),
    Client(redis::Client),
}

impl fmt::Debug for Source {
    // The URL is left out on purpose: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(_) => f.write_str("Url(..)"),
            Source::Client(_) => f.write_str("Client(..)"),
        }
    }
}

/// The connection manager settings unless the builder changes them: the
/// `redis` crate's timeouts (1 s to connect, 500 ms per response), and a
/// reconnection that tries three times within a few hundred milliseconds
/// and then gives up until the next store call. While Redis is down a call
/// therefore fails in well under a second rather than waiting out a long
/// backoff, and the first call after Redis is back reconnects.
fn default_manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
}

impl RedisStoreBuilder {
    /// A builder over an existing [`redis::Client`] (for example one built
    /// from a [`redis::ConnectionInfo`] rather than a URL).
    ///
    /// ```
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let store = carafe::store::RedisStoreBuilder::from_client(client).prefix("s").build()?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_client(client: redis::Client) -> Self {
        RedisStoreBuilder {
            source: Source::Client(client),
            prefix: DEFAULT_PREFIX.to_owned(),
            config: default_manager_config(),
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// The key prefix: records live at `{prefix}:{store key}`. The default is
    /// [`RedisStore::DEFAULT_PREFIX`], `carafe:session`. Give each application sharing a
    /// Redis database its own prefix.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::builder("redis://localhost").prefix("blog:session").build()?;
    /// assert_eq!(store.prefix(), "blog:session");
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = carafe::store::RedisStore::builder("redis://localhost")
    ///     .connection_timeout(Duration::from_millis(300));
    /// # let _ = builder;
    /// ```
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.set_connection_timeout(Some(timeout));
        self
    }

    /// How long the server may take to answer one command (default 500 ms).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = carafe::store::RedisStore::builder("redis://localhost")
    ///     .response_timeout(Duration::from_secs(2));
    /// # let _ = builder;
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.set_response_timeout(Some(timeout));
        self
    }

    /// Replaces every connection manager setting (timeouts, reconnection
    /// backoff) with `config`. Later calls of
    /// [`connection_timeout`](Self::connection_timeout) and
    /// [`response_timeout`](Self::response_timeout) change it further.
    ///
    /// ```
    /// use redis::aio::ConnectionManagerConfig;
    /// let config = ConnectionManagerConfig::new().set_number_of_retries(2);
    /// let builder = carafe::store::RedisStore::builder("redis://localhost").manager_config(config);
    /// # let _ = builder;
    /// ```
    pub fn manager_config(mut self, config: ConnectionManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// The largest record the store writes or reads (default 4 MiB): see
    /// [`RedisStore::max_record_bytes`].
    ///
    /// ```
    /// let store = carafe::store::RedisStore::builder("redis://localhost").max_record_bytes(64 * 1024).build()?;
    /// assert_eq!(store.record_limit(), 64 * 1024);
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None here; the limit shows in the errors of
    /// [`save`](SessionStore::save) and [`cycle`](SessionStore::cycle).
    pub fn max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// Builds the store. It connects on first use, not now.
    ///
    /// ```
    /// let store = carafe::store::RedisStore::builder("redis://localhost").build()?;
    /// # let _ = store;
    /// # Ok::<(), carafe::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is not a valid Redis URL.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let client = match self.source {
            Source::Url(url) => redis::Client::open(url.as_str()).map_err(StoreError::backend)?,
            Source::Client(client) => client,
        };
        let connections = Lazy {
            client,
            config: self.config,
            manager: Mutex::new(None),
        };
        Ok(RedisStore::with_connections(self.prefix, Arc::new(connections))
            .max_record_bytes(self.max_record_bytes))
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let mut conn = self.connection()?;
        let reply: Value = match redis::cmd("HGETALL")
            .arg(self.redis_key(key))
            .query_async(&mut conn)
            .await
        {
            Ok(reply) => reply,
            Err(err) if err.code() == Some("WRONGTYPE") => {
                return Err(StoreError::Corrupt("the Redis key does not hold a hash".into()));
            }
            Err(err) => return Err(StoreError::backend(err)),
        };
        let size = reply_size(&reply);
        if size > self.max_record_bytes {
            return Err(crate::store::oversized_record(
                self.name(),
                size,
                self.max_record_bytes,
            ));
        }
        decode(reply)
    }

    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let mut invocation = self.script.key(self.redis_key(key));
        invocation.arg(match change.kind {
            SaveKind::Create => "create",
            SaveKind::Update => "update",
        });
        let removed: &[String] = match change.kind {
            SaveKind::Create => &[],
            SaveKind::Update => &change.removed,
        };
        invocation.arg(self.max_record_bytes);
        change_args(&mut invocation, change, removed, change.kind == SaveKind::Create)?;

        let mut conn = self.connection()?;
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        let (reply, owner) = owners::split_owner(reply);
        match self.script_answer("unexpected answer from the save script", reply)? {
            1 => {
                if let Some(owner) = owner {
                    self.index(&owner, key, None, change.expires).await?;
                }
                Ok(SaveOutcome::Saved)
            }
            0 => Ok(SaveOutcome::Missing),
            -1 => Err(StoreError::Conflict),
            other => Err(unexpected("unexpected answer from the save script", other)),
        }
    }

    /// Deletes the hash and takes it out of its owner's index (see
    /// [a user's sessions](RedisStore#a-users-sessions)).
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.delete_indexed(key).await
    }

    /// One Lua script over both keys (see [new ids](RedisStore#new-ids)).
    /// On Redis Cluster, where the two keys almost always live in different
    /// slots and the server refuses the script with `CROSSSLOT`, a
    /// two-step fallback that is not atomic (see
    /// [Redis Cluster](RedisStore#redis-cluster)).
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let mut invocation = self.cycle_script.key(self.redis_key(from));
        invocation.key(self.redis_key(to));
        invocation.arg(self.max_record_bytes);
        change_args(&mut invocation, change, &change.removed, false)?;

        let mut conn = self.connection()?;
        let (answer, owner) = match invocation.invoke_async::<Value>(&mut conn).await {
            Ok(reply) => {
                let (reply, owner) = owners::split_owner(reply);
                (
                    self.script_answer("unexpected answer from the cycle script", reply)?,
                    owner,
                )
            }
            Err(err) if err.code() == Some("CROSSSLOT") => {
                return self.cycle_across_slots(from, to, change).await;
            }
            Err(err) => return Err(StoreError::backend(err)),
        };
        match answer {
            1 => {
                if let Some(owner) = owner {
                    self.index(&owner, to, Some(from), change.expires).await?;
                }
                Ok(SaveOutcome::Saved)
            }
            0 => Ok(SaveOutcome::Missing),
            -1 => Err(StoreError::Conflict),
            -2 => Err(StoreError::Corrupt("the Redis key does not hold a hash".into())),
            other => Err(unexpected("unexpected answer from the cycle script", other)),
        }
    }

    /// The owner's index, checked against the sessions' hashes (see
    /// [a user's sessions](RedisStore#a-users-sessions)).
    async fn list_owned(
        &self,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<crate::record::OwnedRecord>, StoreError> {
        self.owned(owner, now).await
    }

    /// Redis expires records itself (each hash carries a TTL), so this
    /// returns `Ok(0)` without a round trip.
    async fn delete_expired(&self, _now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// One Lua script on the session's hash (no second key, so it runs on
    /// Redis Cluster as it does on one server).
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        let mut invocation = self.take_fields_script.key(self.redis_key(key));
        invocation.arg(data_field(prefix));
        let mut conn = self.connection()?;
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        let items = match reply {
            Value::Array(items) => items,
            Value::Int(-2) => return Err(StoreError::Corrupt("the Redis key does not hold a hash".into())),
            other => {
                return Err(unexpected(
                    "unexpected answer from the take-fields script",
                    kind_of(&other),
                ))
            }
        };
        let mut taken = Data::new();
        let mut items = items.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            let field = bytes(field).and_then(|b| String::from_utf8(b).ok());
            let name = field.as_deref().and_then(|f| f.strip_prefix(DATA));
            // A field that was not valid (it is gone now) is dropped with a
            // warning, as a corrupt record is; the others are still answered.
            match (name, bytes(value).map(|v| serde_json::from_slice(&v))) {
                (Some(name), Some(Ok(json))) => {
                    taken.insert(name.to_owned(), json);
                }
                _ => tracing::warn!(
                    store = "redis",
                    "dropped a taken session field that is not valid JSON"
                ),
            }
        }
        Ok(taken)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// Adds the arguments of the write the save and cycle scripts end with
/// (see `write_change_lua!`): the expiry, the number of `removed` fields and
/// those fields, then the fields to set: the change's data, `m:created` when
/// `created` is true, `m:accessed` and `m:expires`.
fn change_args(
    invocation: &mut ScriptInvocation<'_>,
    change: &Change,
    removed: &[String],
    created: bool,
) -> Result<(), StoreError> {
    invocation.arg(unix_millis(change.expires)).arg(removed.len());
    for name in removed {
        invocation.arg(data_field(name));
    }
    for (name, value) in &change.set {
        let json = serde_json::to_vec(value).map_err(StoreError::backend)?;
        invocation.arg(data_field(name)).arg(json);
    }
    if created {
        invocation.arg(CREATED).arg(timestamp(change.created));
    }
    invocation
        .arg(ACCESSED)
        .arg(timestamp(change.accessed))
        .arg(EXPIRES)
        .arg(timestamp(change.expires));
    Ok(())
}

/// A backend error for an answer the server or a script never gives.
fn unexpected(what: &'static str, answer: impl fmt::Display) -> StoreError {
    StoreError::backend(RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        what,
        answer.to_string(),
    )))
}

/// The hash field of session key `name`.
fn data_field(name: &str) -> String {
    let mut field = String::with_capacity(DATA.len() + name.len());
    field.push_str(DATA);
    field.push_str(name);
    field
}

/// `t` in unix milliseconds for `PEXPIREAT`, at least 1 (a time before the
/// epoch is just as past as the epoch itself and deletes the key).
fn unix_millis(t: OffsetDateTime) -> i64 {
    let millis = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(millis.max(1)).unwrap_or(i64::MAX)
}

/// `t` as unix seconds: `1700000000`, or `1700000000.25` when it has a
/// fraction of a second.
fn timestamp(t: OffsetDateTime) -> String {
    let nanos = t.unix_timestamp_nanos();
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    if frac == 0 {
        secs.to_string()
    } else {
        let digits = format!("{frac:09}");
        format!("{secs}.{}", digits.trim_end_matches('0'))
    }
}

/// Parses what [`timestamp`] writes.
fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let (secs, frac) = match text.split_once('.') {
        Some((secs, frac)) => (secs, Some(frac)),
        None => (text, None),
    };
    let valid_int = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !valid_int(secs) {
        return None;
    }
    let mut nanos = i128::from(secs.parse::<i64>().ok()?) * 1_000_000_000;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let scaled = format!("{frac:0<9}").parse::<i128>().ok()?;
        nanos += scaled;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// The size of an `HGETALL` reply as the record limit counts it: the byte
/// lengths of its field names and values.
fn reply_size(reply: &Value) -> usize {
    let len = |value: &Value| match value {
        Value::BulkString(bytes) => bytes.len(),
        Value::SimpleString(text) => text.len(),
        Value::VerbatimString { text, .. } => text.len(),
        _ => 0,
    };
    match reply {
        Value::Array(items) => items.iter().map(len).sum(),
        Value::Map(pairs) => pairs.iter().map(|(f, v)| len(f) + len(v)).sum(),
        _ => 0,
    }
}

/// Decodes an `HGETALL` reply. An empty reply is no record.
fn decode(reply: Value) -> Result<Option<Record>, StoreError> {
    let pairs = match reply {
        Value::Nil => return Ok(None),
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(StoreError::Corrupt(
                    "HGETALL answered an odd number of items".into(),
                ));
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((field, value));
            }
            pairs
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "HGETALL answered {}, not a hash",
                kind_of(&other)
            )))
        }
    };
    if pairs.is_empty() {
        return Ok(None);
    }

    let mut data = Data::new();
    let (mut created, mut accessed, mut expires) = (None, None, None);
    for (field, value) in pairs {
        let field = bytes(field)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| StoreError::Corrupt("a hash field name is not UTF-8 text".into()))?;
        let value = bytes(value)
            .ok_or_else(|| StoreError::Corrupt(format!("hash field {field:?} does not hold a string")))?;
        if let Some(name) = field.strip_prefix(DATA) {
            let json = serde_json::from_slice(&value).map_err(|err| {
                StoreError::Corrupt(format!("session key {name:?} is not valid JSON: {err}"))
            })?;
            data.insert(name.to_owned(), json);
            continue;
        }
        let slot = match field.as_str() {
            CREATED => &mut created,
            ACCESSED => &mut accessed,
            EXPIRES => &mut expires,
            // Room for metadata a later version may add.
            other if other.starts_with("m:") => continue,
            other => return Err(StoreError::Corrupt(format!("unexpected hash field {other:?}"))),
        };
        let time = std::str::from_utf8(&value)
            .ok()
            .and_then(parse_timestamp)
            .ok_or_else(|| StoreError::Corrupt(format!("metadata field {field:?} is not a unix time")))?;
        *slot = Some(time);
    }

    let missing = |name: &str| StoreError::Corrupt(format!("metadata field {name:?} is missing"));
    Ok(Some(Record {
        data,
        created: created.ok_or_else(|| missing(CREATED))?,
        accessed: accessed.ok_or_else(|| missing(ACCESSED))?,
        expires: expires.ok_or_else(|| missing(EXPIRES))?,
    }))
}

/// The bytes of a string reply.
fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => "a string",
        Value::Okay => "OK",
        Value::Array(_) | Value::Set(_) | Value::Push { .. } => "a list",
        Value::Map(_) | Value::Attribute { .. } => "a map",
        Value::Double(_) | Value::BigNumber(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::ServerError(_) => "an error",
        _ => "an unknown value",
    }
}

/// Where the store gets a connection for each call.
trait Connections: Send + Sync {
    fn get(&self) -> RedisResult<Conn>;
    fn describe(&self) -> &'static str;
}

/// A connection manager made on first use, from inside the runtime (making
/// one spawns a task, which needs a running tokio runtime).
struct Lazy {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: Mutex<Option<ConnectionManager>>,
}

impl Connections for Lazy {
    fn get(&self) -> RedisResult<Conn> {
        let mut slot = self.manager.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(manager) = slot.as_ref() {
            return Ok(Conn(Box::new(manager.clone())));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "the Redis session store must be used from within a tokio runtime",
            )));
        }
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
        *slot = Some(manager.clone());
        Ok(Conn(Box::new(manager)))
    }

    fn describe(&self) -> &'static str {
        "connection manager"
    }
}

/// A connection given by the application.
struct Given<C>(C);

impl<C> Connections for Given<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn get(&self) -> RedisResult<Conn> {
        Ok(Conn(Box::new(self.0.clone())))
    }

    fn describe(&self) -> &'static str {
        "given connection"
    }
}

/// One call's connection, whatever its type.
struct Conn(Box<dyn ConnectionLike + Send>);

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A hash's fields and values, as bytes (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// For the fuzz targets: decodes an `HGETALL` reply made of `pairs` (as an
/// array, the RESP2 form, or a map, RESP3), as a load does.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_pairs(
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    as_map: bool,
) -> Result<Option<Record>, StoreError> {
    let reply = if as_map {
        Value::Map(
            pairs
                .into_iter()
                .map(|(f, v)| (Value::BulkString(f), Value::BulkString(v)))
                .collect(),
        )
    } else {
        Value::Array(
            pairs
                .into_iter()
                .flat_map(|(f, v)| [Value::BulkString(f), Value::BulkString(v)])
                .collect(),
        )
    };
    decode(reply)
}

/// For the fuzz targets: the hash fields a create of `record` writes
/// (`d:{key}` as JSON, then the metadata), as the save script gets them.
#[cfg(feature = "fuzzing")]
pub(crate) fn encode_pairs(record: &Record) -> Result<Pairs, StoreError> {
    let mut pairs = Vec::with_capacity(record.data.len() + 3);
    for (name, value) in &record.data {
        let json = serde_json::to_vec(value).map_err(StoreError::backend)?;
        pairs.push((data_field(name).into_bytes(), json));
    }
    for (field, t) in [
        (CREATED, record.created),
        (ACCESSED, record.accessed),
        (EXPIRES, record.expires),
    ] {
        pairs.push((field.as_bytes().to_vec(), timestamp(t).into_bytes()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for nanos in [
            0i128,
            1_700_000_000_000_000_000,
            1_700_000_000_500_000_000,
            1_700_000_000_000_000_001,
            -1,
            -1_500_000_000,
        ] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("valid time");
            assert_eq!(parse_timestamp(&timestamp(t)), Some(t), "{nanos}");
        }
        assert_eq!(timestamp(OffsetDateTime::UNIX_EPOCH), "0");
        assert_eq!(
            timestamp(OffsetDateTime::from_unix_timestamp_nanos(1_250_000_000).expect("valid")),
            "1.25"
        );
    }

    #[test]
    fn bad_timestamps_are_rejected() {
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1.2.3",
            "abc",
            "1e9",
            " 1",
            "+1",
            "1.0000000001",
            "99999999999999999999",
            "1.-5",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millis_are_clamped() {
        assert_eq!(unix_millis(OffsetDateTime::UNIX_EPOCH), 1);
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        assert_eq!(unix_millis(t), 1_700_000_000_000);
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn hash(fields: &[(&str, &str)]) -> Value {
        Value::Array(fields.iter().flat_map(|(f, v)| [bulk(f), bulk(v)]).collect())
    }

    #[test]
    fn decodes_a_hash() {
        let reply = hash(&[
            ("m:created", "10"),
            ("m:accessed", "20"),
            ("m:expires", "30"),
            ("d:user", "\"ann\""),
            ("d:m:created", "1"),
            ("m:future", "x"),
        ]);
        let record = decode(reply).expect("decodes").expect("a record");
        assert_eq!(record.created.unix_timestamp(), 10);
        assert_eq!(record.accessed.unix_timestamp(), 20);
        assert_eq!(record.expires.unix_timestamp(), 30);
        assert_eq!(record.data["user"], "ann");
        assert_eq!(record.data["m:created"], 1);
        assert_eq!(record.data.len(), 2);
    }

    #[test]
    fn decodes_a_resp3_map_and_nothing() {
        let reply = Value::Map(vec![
            (bulk("m:created"), bulk("1")),
            (bulk("m:accessed"), bulk("1")),
            (bulk("m:expires"), bulk("1")),
        ]);
        assert!(decode(reply).expect("decodes").is_some());
        assert!(decode(Value::Array(vec![])).expect("decodes").is_none());
        assert!(decode(Value::Map(vec![])).expect("decodes").is_none());
        assert!(decode(Value::Nil).expect("decodes").is_none());
    }

    #[test]
    fn bad_hashes_are_corrupt() {
        let ok = [("m:created", "1"), ("m:accessed", "1"), ("m:expires", "1")];
        let cases: Vec<Value> = vec![
            hash(&[ok[0], ok[1], ok[2], ("d:a", "{not json")]),
            hash(&[ok[0], ok[1]]),
            hash(&[ok[0], ok[1], ("m:expires", "tomorrow")]),
            hash(&[ok[0], ok[1], ok[2], ("other", "1")]),
            hash(&[("d:a", "1")]),
            Value::Array(vec![bulk("m:created")]),
            Value::Array(vec![Value::Int(1), bulk("1")]),
            Value::Array(vec![bulk("m:created"), Value::Int(1)]),
            Value::Array(vec![Value::BulkString(vec![0xff, 0xfe]), bulk("1")]),
            Value::Int(3),
            Value::Okay,
        ];
        for reply in cases {
            let shown = format!("{reply:?}");
            assert!(matches!(decode(reply), Err(StoreError::Corrupt(_))), "{shown}");
        }
    }

    #[test]
    fn construction_does_not_connect_and_debug_hides_the_url() {
        let store = RedisStore::new("redis://:hunter2@127.0.0.1:1/0").expect("valid URL");
        assert!(!format!("{store:?}").contains("hunter2"));
        let builder = RedisStore::builder("redis://:hunter2@127.0.0.1:1/0");
        assert!(!format!("{builder:?}").contains("hunter2"));
        assert!(matches!(
            RedisStore::new("not a url"),
            Err(StoreError::Backend(_))
        ));
        assert_eq!(store.name(), "redis");
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let store = RedisStore::new("redis://127.0.0.1:1").expect("valid URL");
        assert!(matches!(store.connection(), Err(StoreError::Backend(_))));
    }

    #[test]
    fn merge_fields_applies_the_change_and_keeps_the_rest() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        let taken = hash(&[
            ("m:created", "10"),
            ("m:accessed", "20"),
            ("m:expires", "30"),
            ("m:future", "x"),
            ("d:keep", "1"),
            ("d:drop", "2"),
            ("d:set", "3"),
        ]);
        let Value::Array(items) = taken else {
            unreachable!()
        };
        let mut set = Data::new();
        set.insert("set".into(), serde_json::json!(4));
        set.insert("new".into(), serde_json::json!("n"));
        let change = Change {
            kind: SaveKind::Update,
            set,
            removed: vec!["drop".into()],
            created: t,
            accessed: t,
            expires: t,
        };
        let merged = merge_fields(items, &change).expect("merges");
        let reply = Value::Array(
            merged
                .into_iter()
                .flat_map(|(f, v)| [Value::BulkString(f), Value::BulkString(v)])
                .collect(),
        );
        let mut fields = decode(reply).expect("decodes").expect("a record");
        assert_eq!(fields.created.unix_timestamp(), 10);
        assert_eq!(fields.accessed, t);
        assert_eq!(fields.expires, t);
        fields.data.sort_keys();
        let keys: Vec<&str> = fields.data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["keep", "new", "set"]);
        assert_eq!(fields.data["set"], 4);
        assert!(matches!(
            merge_fields(vec![bulk("m:created")], &change),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// The Redis Cluster fallback (two steps), run against a single server
    /// when one answers at `CARAFE_REDIS_URL` (default 127.0.0.1:6379): the
    /// conformance checks of a cycle that do not require one atomic step.
    #[cfg(feature = "conformance")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cycle_across_slots_keeps_the_contract_but_atomicity() {
        use crate::store::conformance::{self, forward::Forward, forward::Variant};

        /// Every cycle takes the two-step path of keys in different slots.
        #[derive(Debug)]
        struct AcrossSlots;
        #[async_trait]
        impl Variant<RedisStore> for AcrossSlots {
            async fn cycle(
                &self,
                store: &RedisStore,
                from: &StoreKey,
                to: &StoreKey,
                change: &Change,
            ) -> Result<SaveOutcome, StoreError> {
                store.cycle_across_slots(from, to, change).await
            }
        }

        let url = std::env::var("CARAFE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("carafe-test:{}", &crate::SessionId::generate().expose()[..16]);
        let store = RedisStore::builder(url.as_str())
            .prefix(prefix.as_str())
            .manager_config(ConnectionManagerConfig::new().set_number_of_retries(0))
            .build()
            .expect("valid URL");
        if let Err(err) = store.ping().await {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "no Redis and CI=true: {err}"
            );
            eprintln!("skipped: no Redis at {url}: {err}");
            return;
        }
        let store = Forward {
            inner: store,
            name: "redis-across-slots",
            variant: AcrossSlots,
        };
        conformance::cycle_moves_record(&store).await;
        conformance::cycle_missing_is_missing(&store).await;
        conformance::cycle_onto_existing_conflicts(&store).await;
        conformance::cycle_racing_update(&store).await;
        // The owner's index follows the two-step move.
        conformance::owner_moves_with_cycle(&store).await;
        // A cycle too large to move puts the hash back under its old key.
        let small = Forward {
            inner: store.inner.clone().max_record_bytes(8192),
            name: "redis-across-slots",
            variant: AcrossSlots,
        };
        conformance::oversized_save_is_refused(&small, 8192).await;

        // Clean up: the records would expire in a few days anyway.
        let mut conn = store.inner.connection().expect("connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<Value>(&mut conn)
                .await
                .expect("DEL");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_backend_error() {
        let store = RedisStore::builder("redis://127.0.0.1:1")
            .manager_config(ConnectionManagerConfig::new().set_number_of_retries(0))
            .build()
            .expect("valid URL");
        let key = crate::SessionId::generate().store_key();
        assert!(matches!(store.load(&key).await, Err(StoreError::Backend(_))));
        assert!(matches!(store.ping().await, Err(StoreError::Backend(_))));
    }
}
