//! The store contract and the stores carafe ships.
//!
//! | store | feature | when to pick it |
//! |---|---|---|
//! | [`MemoryStore`] | always | development and tests: lost on restart, one process |
//! | [`FileStore`] | always | one server: one file per session in a data dir |
//! | `RedisStore` | `redis-store` | several servers: one hash per session, per-key writes, Redis TTL expiry; on Redis Cluster with `redis-cluster` |
//! | `PostgresStore` | `postgres-store` | several servers: a `jsonb` row per session, merged per key |
//! | `SqliteStore` | `sqlite-store` | one server that wants a real database file |
//! | `CookieStore` | `cookie-store` | no server state: the session is encrypted into the cookie |
//!
//! Every server-side store passes the conformance suite, `conformance::run`
//! (module `carafe::store::conformance`, behind the `conformance` feature).
//!
//! # Record size limit
//!
//! Every server-side store refuses to write a record larger than its limit,
//! [`DEFAULT_MAX_RECORD_BYTES`] (4 MiB) unless set with the store's
//! `max_record_bytes(usize)` option (read it back with `record_limit()`).
//! A save that would exceed it fails with [`StoreError::TooLarge`] and writes
//! nothing: the record stored before stays as it was, and the request
//! answers 500 without touching the cookie. A stored record larger than the
//! limit (written under a larger limit, or by another program) loads as
//! [`StoreError::Corrupt`], with a warning naming the store and the size:
//! the runtime starts a fresh session and deletes the record. What a store
//! counts is documented on each store (the JSON of the whole record for
//! [`MemoryStore`] and [`FileStore`], the stored data for the others).

use std::sync::Arc;

/// The attribute a [`SessionStore`] implementation goes under, re-exported
/// so that a custom store needs no dependency of its own for it.
pub use async_trait::async_trait;
/// The timestamps of a [`Record`] and [`Change`], re-exported from `time`.
pub use time::OffsetDateTime;

pub use crate::error::StoreError;
pub use crate::id::StoreKey;
pub use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome, OWNER_KEY};

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "cookie-store")]
mod cookie;
mod file;
mod memory;
#[cfg(feature = "postgres-store")]
mod postgres;
#[cfg(feature = "redis-store")]
mod redis;
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
mod sql;
#[cfg(feature = "sqlite-store")]
mod sqlite;

#[cfg(feature = "cookie-store")]
pub use cookie::CookieStore;
#[cfg(feature = "fuzzing")]
pub(crate) use file::decode_record;
pub use file::FileStore;
pub use memory::MemoryStore;
#[cfg(feature = "postgres-store")]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis-cluster")]
pub use redis::RedisClusterBuilder;
#[cfg(all(feature = "fuzzing", feature = "redis-store"))]
pub(crate) use redis::{
    decode_pairs as decode_redis_pairs, encode_pairs as encode_redis_pairs, Pairs as RedisPairs,
};
#[cfg(feature = "redis-store")]
pub use redis::{RedisStore, RedisStoreBuilder};
#[cfg(all(
    feature = "fuzzing",
    any(feature = "postgres-store", feature = "sqlite-store")
))]
pub(crate) use sql::record as sql_record;
#[cfg(feature = "sqlite-store")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
/// The [sqlx](https://docs.rs/sqlx/0.8) crate the SQL stores are built on,
/// re-exported so that an application's pools match the stores' version.
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub use sqlx;

/// The default record size limit of every server-side store: 4 MiB (see
/// [the module docs](self#record-size-limit)).
///
/// ```
/// assert_eq!(carafe::store::DEFAULT_MAX_RECORD_BYTES, carafe::FileStore::DEFAULT_MAX_RECORD_BYTES);
/// assert_eq!(carafe::MemoryStore::new().record_limit(), 4 * 1024 * 1024);
/// ```
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// The answer to a load of a record of `size` bytes, over `limit`: a
/// warning naming the store and the sizes (never the key or the values) and
/// [`StoreError::Corrupt`], which the runtime treats as no session.
pub(crate) fn oversized_record(store: &'static str, size: usize, limit: usize) -> StoreError {
    tracing::warn!(
        store,
        size,
        limit,
        "session record is larger than the store's record limit; loading it as no session"
    );
    StoreError::Corrupt(format!(
        "record is {size} bytes, larger than the limit of {limit} bytes"
    ))
}

/// The length of `value` as compact JSON, counted without keeping the text.
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> Result<usize, StoreError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(StoreError::backend)?;
    Ok(count.0)
}

/// Where sessions are kept.
///
/// The contract, which the conformance suite (`conformance::run`, feature
/// `conformance`) checks for any store:
///
/// * [`load`](SessionStore::load) returns the record filed under the key, or
///   `None`. It may return an expired record; the runtime checks expiry
///   itself. A record that cannot be decoded is
///   [`StoreError::Corrupt`]: the runtime then treats the session as absent,
///   logs a warning and deletes it. So is a record larger than the store's
///   record limit ([`DEFAULT_MAX_RECORD_BYTES`] unless configured).
/// * [`save`](SessionStore::save) with [`SaveKind::Create`]
///   writes a new record, or answers [`StoreError::Conflict`] and writes
///   nothing if one exists. With [`SaveKind::Update`]
///   it merges the change into the record as it is *now* (keys in
///   `change.set` written, keys in `change.removed` removed, every other key
///   left as it is, timestamps replaced) and answers
///   [`SaveOutcome::Missing`] without writing if there is no record: a
///   session deleted by another request is never brought back. Merging is
///   atomic per save: two overlapping saves that change different keys both
///   keep their keys. A save (or cycle) whose resulting record would be
///   larger than the store's record limit answers [`StoreError::TooLarge`]
///   and writes nothing (see [record size limit](self#record-size-limit)).
/// * [`delete`](SessionStore::delete) removes the record; deleting a missing
///   record is not an error.
/// * [`cycle`](SessionStore::cycle) moves a record to a new key with a
///   change merged in, atomically: [`SaveOutcome::Missing`] without writing
///   if there is no record (a logout came first), [`StoreError::Conflict`]
///   without writing if the new key is taken.
/// * [`take_prefixed`](SessionStore::take_prefixed) removes the keys with a
///   prefix from a record and answers them, atomically: of two overlapping
///   takes each key goes to one (flash messages are shown once).
/// * [`delete_expired`](SessionStore::delete_expired) removes records whose
///   `expires` is at or before `now` and returns how many it removed. Stores
///   whose backend expires records itself may return 0.
/// * [`list_owned`](SessionStore::list_owned) lists the records whose data
///   names an owner under [`OWNER_KEY`] and that expire after `now`. A
///   store that keeps an index for it never lets an index entry bring back
///   a deleted, expired or re-owned record. Stores written before it existed
///   inherit a default that answers [`StoreError::Unsupported`].
///
/// Stores are used as `Arc<dyn SessionStore>`.
///
/// A custom store needs nothing but carafe: the attribute, the record types
/// and the timestamp type are all in this module.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// use carafe::store::{
///     async_trait, Change, Data, OffsetDateTime, Record, SaveKind, SaveOutcome, SessionStore,
///     StoreError, StoreKey,
/// };
///
/// #[derive(Debug, Default)]
/// struct MapStore(Mutex<HashMap<String, Record>>);
///
/// fn merge(record: &mut Record, change: &Change) {
///     record.data.extend(change.set.clone());
///     for key in &change.removed {
///         record.data.remove(key);
///     }
///     record.accessed = change.accessed;
///     record.expires = change.expires;
/// }
///
/// #[async_trait]
/// impl SessionStore for MapStore {
///     async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
///         Ok(self.0.lock().unwrap().get(key.as_str()).cloned())
///     }
///     async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         match (change.kind, map.get_mut(key.as_str())) {
///             (SaveKind::Create, Some(_)) => Err(StoreError::Conflict),
///             (SaveKind::Create, None) => {
///                 map.insert(key.as_str().to_owned(), change.to_record());
///                 Ok(SaveOutcome::Saved)
///             }
///             (SaveKind::Update, Some(record)) => {
///                 merge(record, change);
///                 Ok(SaveOutcome::Saved)
///             }
///             (SaveKind::Update, None) => Ok(SaveOutcome::Missing),
///         }
///     }
///     async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
///         self.0.lock().unwrap().remove(key.as_str());
///         Ok(())
///     }
///     async fn cycle(
///         &self,
///         from: &StoreKey,
///         to: &StoreKey,
///         change: &Change,
///     ) -> Result<SaveOutcome, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         if map.contains_key(to.as_str()) {
///             return Err(StoreError::Conflict);
///         }
///         let Some(mut record) = map.remove(from.as_str()) else {
///             return Ok(SaveOutcome::Missing);
///         };
///         merge(&mut record, change);
///         map.insert(to.as_str().to_owned(), record);
///         Ok(SaveOutcome::Saved)
///     }
///     async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         Ok(map.get_mut(key.as_str()).map(|r| r.take_prefixed(prefix)).unwrap_or_default())
///     }
///     async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         let before = map.len();
///         map.retain(|_, record| record.expires > now);
///         Ok((before - map.len()) as u64)
///     }
///     fn name(&self) -> &'static str {
///         "map"
///     }
/// }
///
/// let _layer = carafe::SessionLayer::builder(MapStore::default())
///     .secret(&[7u8; 64])
///     .build()?;
/// # Ok::<(), carafe::ConfigError>(())
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Loads the record filed under `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an undecodable record; any other variant
    /// when the backend fails.
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError>;

    /// Creates or updates the record filed under `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for a create over an existing record;
    /// [`StoreError::TooLarge`] when the resulting record would exceed the
    /// store's record limit (nothing is written); any other variant when the
    /// backend fails.
    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError>;

    /// Deletes the record filed under `key`, if any.
    ///
    /// # Errors
    ///
    /// When the backend fails.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;

    /// Moves the record filed under `from` to `to`, merging `change` into
    /// it, as one atomic step: how `cycle_id()` (at login) gives a session a
    /// new id. `change.kind` is [`SaveKind::Update`]:
    /// keys in `change.set` are written, keys in `change.removed` removed,
    /// every other key of the record *as it is now* kept, timestamps
    /// replaced.
    ///
    /// * No record under `from` (deleted meanwhile, by a logout in another
    ///   request): nothing is written, the answer is
    ///   [`SaveOutcome::Missing`]. A deleted session is never brought back
    ///   under a new id.
    /// * A record under `to` already: nothing is written, the answer is
    ///   [`StoreError::Conflict`].
    /// * Otherwise the merged record is filed under `to` and `from` holds
    ///   nothing, and no other call on the store sees one without the other:
    ///   a delete of `from` that overlaps the move either comes first (the
    ///   move answers `Missing`) or finds nothing to delete.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when `to` is taken; any other variant when
    /// the backend fails (then nothing was moved).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use carafe::{SessionId, SessionStore};
    /// use carafe::store::{Change, SaveKind, SaveOutcome};
    /// let store = carafe::MemoryStore::new();
    /// let (from, to) = (SessionId::generate().store_key(), SessionId::generate().store_key());
    /// let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let change = Change { kind: SaveKind::Update, set: Default::default(), removed: vec![],
    ///                       created: t, accessed: t, expires: t };
    /// // Nothing under `from`: nothing is created under `to`.
    /// assert_eq!(store.cycle(&from, &to, &change).await?, SaveOutcome::Missing);
    /// assert!(store.load(&to).await?.is_none());
    /// # Ok::<(), carafe::StoreError>(()) }).unwrap();
    /// ```
    async fn cycle(&self, from: &StoreKey, to: &StoreKey, change: &Change)
        -> Result<SaveOutcome, StoreError>;

    /// Removes the keys of the record under `key` that start with `prefix`
    /// and returns them with their values, as one atomic step: how a flash
    /// message ([`crate::flash`]) is shown exactly once. Of two overlapping
    /// takes, each key goes to exactly one; a key written after the take is
    /// left for the next. Nothing else in the record changes (not even its
    /// timestamps). No record, or no such key: an empty map, and nothing is
    /// written.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an undecodable record; any other variant
    /// when the backend fails (then nothing was removed).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use carafe::{SessionId, SessionStore};
    /// use carafe::store::{Change, SaveKind};
    /// let store = carafe::MemoryStore::new();
    /// let key = SessionId::generate().store_key();
    /// let t = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    /// let mut set = carafe::store::Data::new();
    /// set.insert("_flash.a".into(), "saved".into());
    /// set.insert("user".into(), 7.into());
    /// let change = Change { kind: SaveKind::Create, set, removed: vec![],
    ///                       created: t, accessed: t, expires: t };
    /// store.save(&key, &change).await?;
    /// assert_eq!(store.take_prefixed(&key, "_flash.").await?.len(), 1);
    /// assert!(store.take_prefixed(&key, "_flash.").await?.is_empty(), "taken once");
    /// assert!(store.load(&key).await?.unwrap().data.contains_key("user"));
    /// # Ok::<(), carafe::StoreError>(()) }).unwrap();
    /// ```
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError>;

    /// Deletes every record that expired at or before `now`.
    ///
    /// # Errors
    ///
    /// When the backend fails.
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// The live sessions of `owner`: every record whose data holds
    /// `owner` as a JSON string under [`OWNER_KEY`] (set by
    /// [`Session::set_owner`](crate::Session::set_owner)) and whose
    /// `expires` is after `now`, in any order. What lists a user's sessions
    /// and revokes them (OWASP's "simultaneous logons"); the runtime turns
    /// the keys into handles that are not the keys.
    ///
    /// The default answers [`StoreError::Unsupported`], so a store written
    /// against the trait before this method existed keeps compiling and
    /// says clearly that it cannot; every server-side store carafe ships
    /// implements it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] from a store that cannot list by owner;
    /// any other variant when the backend fails.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use carafe::store::{Change, SaveKind, SessionStore, OWNER_KEY};
    /// let store = carafe::MemoryStore::new();
    /// let t = time::OffsetDateTime::now_utc();
    /// let mut set = carafe::store::Data::new();
    /// set.insert(OWNER_KEY.into(), "user-7".into());
    /// let change = Change { kind: SaveKind::Create, set, removed: vec![],
    ///                       created: t, accessed: t, expires: t + time::Duration::hours(1) };
    /// let key = carafe::SessionId::generate().store_key();
    /// store.save(&key, &change).await?;
    /// let listed = store.list_owned("user-7", t).await?;
    /// assert_eq!(listed.len(), 1);
    /// assert_eq!(listed[0].key, key);
    /// assert!(store.list_owned("user-8", t).await?.is_empty());
    /// # Ok::<(), carafe::StoreError>(()) }).unwrap();
    /// ```
    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        let _ = (owner, now);
        Err(StoreError::Unsupported {
            store: self.name(),
            operation: "list a user's sessions",
        })
    }

    /// A short name for logs and error messages, such as `"redis"`.
    fn name(&self) -> &'static str;
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        (**self).load(key).await
    }
    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        (**self).save(key, change).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        (**self).cycle(from, to, change).await
    }
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        (**self).take_prefixed(key, prefix).await
    }
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        (**self).delete_expired(now).await
    }
    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        (**self).list_owned(owner, now).await
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}
