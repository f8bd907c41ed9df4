//! An SQLite store (feature `sqlite-store`).

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::{ConfigError, StoreError};
use crate::id::StoreKey;
use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome, OWNER_KEY};
use crate::store::sql::{self, map_err};
use crate::store::SessionStore;

/// Sessions in an SQLite database file, one row per session (sqlx, tokio).
///
/// The embedded choice for a single server that wants a real database file
/// rather than one file per session ([`FileStore`](crate::store::FileStore)).
/// The table (default `carafe_sessions`, created by
/// [`migrate`](SqliteStore::migrate)) has the same columns as
/// [`PostgresStore`](crate::store::PostgresStore)'s: `id` (the
/// [`StoreKey`]), `data` (a JSON object as text), and `created_at`,
/// `accessed_at` and `expires_at` as integer unix seconds, with an index on
/// `expires_at`.
///
/// A save is one statement. An update merges the change into the stored
/// JSON with SQLite's JSON functions: the changed and removed keys are
/// taken out with `json_patch` (whose `null` means "remove"), then the new
/// values are appended as they were serialized, so a value that *is* JSON
/// `null`, or a key with `.`, `"` or any other character, is stored as
/// given. An update never brings back a deleted row; a touch only rewrites
/// the timestamps. A [`cycle`](SessionStore::cycle) (a new id at login) is
/// one `UPDATE` that changes the row's `id` and merges the change, atomic
/// against a concurrent logout or update of the old id.
/// [`delete_expired`](SessionStore::delete_expired) deletes in batches of
/// 1000 rows by default.
///
/// # Record size limit
///
/// The limit ([`max_record_bytes`](SqliteStoreBuilder::max_record_bytes),
/// default 4 MiB) counts the `data` column: the session data as the JSON
/// text stored, in bytes (`length(CAST(data AS BLOB))`). A create is
/// measured before it is sent. An update or cycle merges in the database, so
/// the merged size is checked there, in the same statement: the `UPDATE`'s
/// `WHERE` requires the merged JSON to fit, so an oversized merge writes
/// nothing. Only when that statement changes no row does the store ask once
/// more (a `SELECT` of the merged size) whether the row is missing or the
/// merge too large; a save that fits costs no extra round trip. A row larger
/// than the limit loads as [`StoreError::Corrupt`] (a fresh session, with a
/// warning naming the store and the size); its data is not read out.
///
/// ```no_run
/// # async fn example() -> Result<(), carafe::StoreError> {
/// let store = carafe::store::SqliteStore::connect("sqlite://sessions.db?mode=rwc").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    sql: Arc<Statements>,
    max_record_bytes: usize,
}

/// Builds an [`SqliteStore`] with a table name or batch size other than the
/// defaults. Made by [`SqliteStore::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = carafe::store::sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let store = carafe::store::SqliteStore::builder(pool).table("sessions").build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to make the store"]
pub struct SqliteStoreBuilder {
    pool: SqlitePool,
    table: String,
    batch: u32,
    max_record_bytes: usize,
}

#[derive(Debug)]
struct Statements {
    table: String,
    batch: u32,
    create_table: String,
    create_index: String,
    has_owner: String,
    add_owner: String,
    create_owner_index: String,
    list_owned: String,
    load: String,
    insert: String,
    update: String,
    cycle: String,
    merged_size: String,
    touch: String,
    delete: String,
    reap: String,
    take_read: String,
    take_swap: String,
}

impl Statements {
    fn new(table: &str, batch: u32) -> Result<Self, ConfigError> {
        sql::check_ident("table", table)?;
        sql::check_batch(batch)?;
        let t = sql::quote(table);
        let index = sql::quote(&format!("{table}_expires_at_idx"));
        let owner_index = sql::quote(&format!("{table}_owner_idx"));
        let owner_path = format!("'$.\"{OWNER_KEY}\"'");
        let merge = format!(
            "(SELECT json(CASE \
             WHEN ?3 = '' THEN p \
             WHEN p = '{{}}' THEN '{{' || ?3 || '}}' \
             ELSE substr(p, 1, length(p) - 1) || ',' || ?3 || '}}' END) \
             FROM (SELECT json_patch({t}.data, ?2) AS p))"
        );
        Ok(Statements {
            table: table.to_owned(),
            batch,
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id TEXT PRIMARY KEY NOT NULL, \
                 data TEXT NOT NULL, \
                 created_at INTEGER NOT NULL, \
                 accessed_at INTEGER NOT NULL, \
                 expires_at INTEGER NOT NULL)"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)"),
            // SQLite has no ADD COLUMN IF NOT EXISTS: the migration asks
            // first. `table_xinfo` lists generated columns too.
            has_owner: format!("SELECT count(*) FROM pragma_table_xinfo('{table}') WHERE name = 'owner'"),
            // The owner, computed by SQLite from the data (a virtual column,
            // the kind ALTER TABLE can add) and kept in the index: written by
            // the statement that writes the data, moved by a cycle, gone with
            // the row. Only a JSON string is an owner; invalid JSON (a
            // corrupt row) has none rather than failing the write.
            add_owner: format!(
                "ALTER TABLE {t} ADD COLUMN owner TEXT GENERATED ALWAYS AS \
                 (CASE WHEN NOT json_valid(data) THEN NULL \
                 WHEN json_type(data, {owner_path}) = 'text' THEN json_extract(data, {owner_path}) END) VIRTUAL"
            ),
            create_owner_index: format!(
                "CREATE INDEX IF NOT EXISTS {owner_index} ON {t} (owner) WHERE owner IS NOT NULL"
            ),
            list_owned: format!(
                "SELECT id, created_at, accessed_at, expires_at FROM {t} \
                 WHERE owner = ?1 AND expires_at > ?2"
            ),
            // ?2: the record limit. An oversized row's data is not read out.
            load: format!(
                "SELECT CASE WHEN length(CAST(data AS BLOB)) <= ?2 THEN data END AS data, \
                 length(CAST(data AS BLOB)) AS size, created_at, accessed_at, expires_at \
                 FROM {t} WHERE id = ?1"
            ),
            insert: format!(
                "INSERT INTO {t} (id, data, created_at, accessed_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING"
            ),
            // ?2: `{"k": null, ...}` for every key removed or set: json_patch
            //     removes them (RFC 7396), whatever characters they hold.
            // ?3: the members of the serialized `set` object without its
            //     braces (`"k":v,...`, or empty), appended to the object
            //     json_patch left (minified, so it ends with `}`); json()
            //     checks the result. No JSON path is built from a key, and a
            //     `null` value is never given to json_patch.
            // ?6: the record limit; an oversized merge changes no row.
            update: format!(
                "UPDATE {t} SET data = {merge}, accessed_at = ?4, expires_at = ?5 \
                 WHERE id = ?1 AND length(CAST({merge} AS BLOB)) <= ?6"
            ),
            // The update's merge, and the row's id changed to ?6 in the same
            // statement: atomic (SQLite runs one writer at a time), and the
            // primary key refuses a `to` that is taken (Conflict).
            // ?7: the record limit, as in the update.
            cycle: format!(
                "UPDATE {t} SET id = ?6, data = {merge}, accessed_at = ?4, expires_at = ?5 \
                 WHERE id = ?1 AND length(CAST({merge} AS BLOB)) <= ?7"
            ),
            // After an update or cycle that changed no row: the size the
            // merge would have had (no row: the row is missing).
            merged_size: format!("SELECT length(CAST({merge} AS BLOB)) AS size FROM {t} WHERE id = ?1"),
            touch: format!("UPDATE {t} SET accessed_at = ?2, expires_at = ?3 WHERE id = ?1"),
            // take_prefixed: read the data (?2: the record limit), then
            // write it back without the taken keys only if its text is still
            // what was read (a compare-and-swap).
            take_read: format!("SELECT data FROM {t} WHERE id = ?1 AND length(CAST(data AS BLOB)) <= ?2"),
            take_swap: format!("UPDATE {t} SET data = ?3 WHERE id = ?1 AND data = ?2"),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            reap: format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
        })
    }
}

impl SqliteStoreBuilder {
    /// The table name (default `carafe_sessions`): a plain identifier of at
    /// most 48 ASCII letters, digits and underscores.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect_lazy("sqlite::memory:")?;
    /// let store = carafe::store::SqliteStore::builder(pool).table("sessions").build()?;
    /// # Ok(()) }
    /// ```
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// How many expired rows one `DELETE` statement of
    /// [`delete_expired`](SessionStore::delete_expired) removes at most
    /// (default 1000).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect_lazy("sqlite::memory:")?;
    /// let store = carafe::store::SqliteStore::builder(pool).delete_batch_size(100).build()?;
    /// # Ok(()) }
    /// ```
    pub fn delete_batch_size(mut self, rows: u32) -> Self {
        self.batch = rows;
        self
    }

    /// The largest session data the store writes or reads, in bytes of the
    /// stored JSON text (default
    /// [`DEFAULT_MAX_RECORD_BYTES`](crate::store::DEFAULT_MAX_RECORD_BYTES),
    /// 4 MiB; see [the store's docs](SqliteStore#record-size-limit)). A save
    /// whose merged data would be larger fails with [`StoreError::TooLarge`]
    /// and writes nothing; a larger row loads as [`StoreError::Corrupt`],
    /// which the runtime treats as no session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let store = carafe::store::SqliteStore::builder(pool).max_record_bytes(256 * 1024).build()?;
    /// assert_eq!(store.record_limit(), 256 * 1024);
    /// # Ok(()) }
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

    /// Makes the store. Nothing is sent to the database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap();
    /// assert!(carafe::store::SqliteStore::builder(pool).table("no spaces").build().is_err());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Store`] for a table name that is not a plain
    /// identifier; [`ConfigError::NonPositive`] for a batch size of 0.
    pub fn build(self) -> Result<SqliteStore, ConfigError> {
        Ok(SqliteStore {
            sql: Arc::new(Statements::new(&self.table, self.batch)?),
            pool: self.pool,
            max_record_bytes: self.max_record_bytes,
        })
    }
}

impl SqliteStore {
    /// A store using the table `carafe_sessions` through `pool`. Nothing is
    /// sent to the database; call [`migrate`](Self::migrate) to create the
    /// table.
    ///
    /// An in-memory database lives only as long as a connection to it: give
    /// such a pool one connection and no idle timeout or maximum lifetime.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::SqlitePool::connect("sqlite://sessions.db?mode=rwc").await?;
    /// let store = carafe::store::SqliteStore::new(pool);
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new(pool: SqlitePool) -> Self {
        Self::builder(pool)
            .build()
            .unwrap_or_else(|_| unreachable!("the default table name is valid"))
    }

    /// A builder, to choose the table name or batch size.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect_lazy("sqlite::memory:")?;
    /// let store = carafe::store::SqliteStore::builder(pool).table("web_sessions").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(pool: SqlitePool) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            pool,
            table: sql::DEFAULT_TABLE.into(),
            batch: sql::DEFAULT_DELETE_BATCH,
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Opens the database at `url` with a new pool and returns a store on
    /// the default table. `sqlite://path/to/file.db?mode=rwc` creates the
    /// file if needed; a file database is switched to WAL journaling so
    /// that readers do not wait for writers, and every connection waits up
    /// to 5 s for a lock (sqlx's `busy_timeout`). `sqlite::memory:` gives a
    /// database private to this store, kept on one connection that is never
    /// closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), carafe::StoreError> {
    /// use carafe::store::{SessionStore, SqliteStore};
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// store.migrate().await?;
    /// let key = carafe::SessionId::generate().store_key();
    /// assert!(store.load(&key).await?.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is invalid or the database
    /// cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(map_err)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .connect_with(options.journal_mode(SqliteJournalMode::Wal))
                .await
        }
        .map_err(map_err)?;
        Ok(Self::new(pool))
    }

    /// Creates the table and its index on `expires_at` unless they exist,
    /// and the `owner` column (generated from the data's
    /// [`OWNER_KEY`](crate::store::OWNER_KEY), for
    /// [`list_owned`](SessionStore::list_owned)) with its partial index
    /// unless it exists: a table made by an earlier version gains it.
    /// Safe to call on every start.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), carafe::StoreError> {
    /// let store = carafe::store::SqliteStore::connect("sqlite::memory:").await?;
    /// store.migrate().await?;
    /// store.migrate().await?; // a second call changes nothing
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the database fails, for example when it
    /// is read-only.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(&self.sql.create_table)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(&self.sql.create_index)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let has_owner: i64 = sqlx::query_scalar(&self.sql.has_owner)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if has_owner == 0 {
            sqlx::query(&self.sql.add_owner)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        sqlx::query(&self.sql.create_owner_index)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    /// The pool the store uses.
    ///
    /// ```no_run
    /// # fn example(store: carafe::store::SqliteStore) {
    /// let pool: &sqlx::SqlitePool = store.pool();
    /// # }
    /// ```
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap();
    /// assert_eq!(carafe::store::SqliteStore::new(pool).table(), "carafe_sessions");
    /// # }
    /// ```
    #[must_use]
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// The largest session data the store writes or reads, in bytes (see
    /// [`SqliteStoreBuilder::max_record_bytes`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let store = carafe::store::SqliteStore::new(pool);
    /// assert_eq!(store.record_limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn record_limit(&self) -> usize {
        self.max_record_bytes
    }

    /// The limit as an SQL integer.
    fn limit_arg(&self) -> i64 {
        i64::try_from(self.max_record_bytes).unwrap_or(i64::MAX)
    }

    /// Why an update or cycle of `key` changed no row: no row
    /// ([`SaveOutcome::Missing`]), or a row whose merge was larger than the
    /// limit when the statement ran. The size reported is the merge's size
    /// now (another connection may have written the row since).
    async fn unsaved(
        &self,
        key: &StoreKey,
        patch: String,
        members: String,
    ) -> Result<SaveOutcome, StoreError> {
        let size: Option<Option<i64>> = sqlx::query_scalar(&self.sql.merged_size)
            .bind(key.as_str())
            .bind(patch)
            .bind(members)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match size.flatten() {
            None => Ok(SaveOutcome::Missing),
            Some(size) => Err(StoreError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: self.max_record_bytes,
            }),
        }
    }

    fn decode(&self, row: &SqliteRow) -> Result<Record, StoreError> {
        sql::check_row_size(
            self.name(),
            row.try_get("size").map_err(map_err)?,
            self.max_record_bytes,
        )?;
        let text: Option<String> = row.try_get("data").map_err(map_err)?;
        let value = text
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("data is not JSON: {e}")))?;
        sql::record(
            value,
            row.try_get("created_at").map_err(map_err)?,
            row.try_get("accessed_at").map_err(map_err)?,
            row.try_get("expires_at").map_err(map_err)?,
        )
    }
}

/// The two texts an update binds: the removal patch and the members to add.
fn merge_args(change: &Change) -> Result<(String, String), StoreError> {
    let mut patch = serde_json::Map::new();
    for key in change.removed.iter().chain(change.set.keys()) {
        patch.insert(key.clone(), serde_json::Value::Null);
    }
    let patch = serde_json::to_string(&patch).map_err(StoreError::backend)?;
    let set = serde_json::to_string(&change.set).map_err(StoreError::backend)?;
    // `set` serializes as `{...}`: keep what is between the braces.
    let members = set
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_default()
        .to_owned();
    Ok((patch, members))
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.sql.table)
            .field("delete_batch_size", &self.sql.batch)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("connections", &self.pool.size())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.sql.load)
            .bind(key.as_str())
            .bind(self.limit_arg())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|row| self.decode(row)).transpose()
    }

    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let rows = match change.kind {
            SaveKind::Create => {
                let data = serde_json::to_string(&change.set).map_err(StoreError::backend)?;
                if data.len() > self.max_record_bytes {
                    return Err(StoreError::TooLarge {
                        size: data.len(),
                        limit: self.max_record_bytes,
                    });
                }
                sqlx::query(&self.sql.insert)
                    .bind(key.as_str())
                    .bind(data)
                    .bind(change.created.unix_timestamp())
                    .bind(change.accessed.unix_timestamp())
                    .bind(change.expires.unix_timestamp())
                    .execute(&self.pool)
                    .await
            }
            SaveKind::Update if change.is_touch() => {
                sqlx::query(&self.sql.touch)
                    .bind(key.as_str())
                    .bind(change.accessed.unix_timestamp())
                    .bind(change.expires.unix_timestamp())
                    .execute(&self.pool)
                    .await
            }
            SaveKind::Update => {
                let (patch, members) = merge_args(change)?;
                let rows = sqlx::query(&self.sql.update)
                    .bind(key.as_str())
                    .bind(&patch)
                    .bind(&members)
                    .bind(change.accessed.unix_timestamp())
                    .bind(change.expires.unix_timestamp())
                    .bind(self.limit_arg())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if rows == 0 {
                    return self.unsaved(key, patch, members).await;
                }
                return Ok(SaveOutcome::Saved);
            }
        }
        .map_err(map_err)?
        .rows_affected();
        match (change.kind, rows) {
            (SaveKind::Create, 0) => Err(StoreError::Conflict),
            (SaveKind::Update, 0) => Ok(SaveOutcome::Missing),
            _ => Ok(SaveOutcome::Saved),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        sqlx::query(&self.sql.delete)
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// One `UPDATE … SET id = to, data = <merged>, … WHERE id = from`, the
    /// update's merge with the row's key changed in the same statement.
    /// SQLite runs one writer at a time, so a delete or update of `from`
    /// comes wholly before (it is merged, or the move answers `Missing`) or
    /// after (it finds no row). A taken `to` violates the primary key:
    /// [`StoreError::Conflict`], nothing moved.
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let (patch, members) = merge_args(change)?;
        let result = sqlx::query(&self.sql.cycle)
            .bind(from.as_str())
            .bind(&patch)
            .bind(&members)
            .bind(change.accessed.unix_timestamp())
            .bind(change.expires.unix_timestamp())
            .bind(to.as_str())
            .bind(self.limit_arg())
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected());
        match sql::cycle_outcome(result)? {
            SaveOutcome::Missing => self.unsaved(from, patch, members).await,
            saved => Ok(saved),
        }
    }

    /// Reads the row's data, and writes it back without the taken keys
    /// with a compare-and-swap on its text (`… WHERE id = ?1 AND data =
    /// <as read>`), retried when another request changed it in between. A
    /// row over the record limit is left alone (it loads as corrupt).
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        for _ in 0..sql::TAKE_ATTEMPTS {
            let read: Option<String> = sqlx::query_scalar(&self.sql.take_read)
                .bind(key.as_str())
                .bind(self.limit_arg())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            let Some(text) = read else {
                return Ok(Data::new());
            };
            let mut data: Data = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("data is not a JSON object: {e}")))?;
            let taken = crate::record::take_prefixed(&mut data, prefix);
            if taken.is_empty() {
                return Ok(taken);
            }
            let after = serde_json::to_string(&data).map_err(StoreError::backend)?;
            let swapped = sqlx::query(&self.sql.take_swap)
                .bind(key.as_str())
                .bind(&text)
                .bind(&after)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
            if swapped == 1 {
                return Ok(taken);
            }
        }
        Err(sql::take_contended())
    }

    /// One query on the indexed `owner` column (see [the migration](SqliteStore::migrate)).
    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        let rows = sqlx::query(&self.sql.list_owned)
            .bind(owner)
            .bind(now.unix_timestamp())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                sql::owned_row(
                    self.name(),
                    row.try_get("id").map_err(map_err),
                    [
                        row.try_get("created_at").map_err(map_err),
                        row.try_get("accessed_at").map_err(map_err),
                        row.try_get("expires_at").map_err(map_err),
                    ],
                )
            })
            .collect())
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let batch = u64::from(self.sql.batch);
        let mut total = 0;
        loop {
            let rows = sqlx::query(&self.sql.reap)
                .bind(now.unix_timestamp())
                .bind(i64::from(self.sql.batch))
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
            total += rows;
            if rows < batch {
                return Ok(total);
            }
        }
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Data;
    use serde_json::json;

    #[test]
    fn statements_quote_validated_names() {
        let s = Statements::new("carafe_sessions", 1000).expect("valid");
        assert!(s.load.contains("FROM \"carafe_sessions\" WHERE id = ?1"));
        assert!(s.update.contains("json_patch(\"carafe_sessions\".data, ?2)"));
        assert!(matches!(
            Statements::new("x\"; DROP TABLE y; --", 1000),
            Err(ConfigError::Store(_))
        ));
        assert!(matches!(
            Statements::new("t", 0),
            Err(ConfigError::NonPositive { .. })
        ));
    }

    async fn memory_store() -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        store.migrate().await.expect("migrate");
        store
    }

    #[cfg(feature = "conformance")]
    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run(memory_store).await;
    }

    #[tokio::test]
    async fn update_keeps_null_values_and_odd_keys() {
        let store = memory_store().await;
        assert_eq!(
            format!("{store:?}"),
            "SqliteStore { table: \"carafe_sessions\", delete_batch_size: 1000, max_record_bytes: 4194304, connections: 1, closed: false }"
        );
        let key = crate::id::SessionId::generate().store_key();
        let t = OffsetDateTime::UNIX_EPOCH;
        let mut set = Data::new();
        set.insert("keep".into(), json!(1));
        let create = Change {
            kind: SaveKind::Create,
            set,
            removed: vec![],
            created: t,
            accessed: t,
            expires: t,
        };
        store.save(&key, &create).await.expect("create");
        let odd = ["n", "a.b", "a\"b", "it's", "ключ", "$[0]", "\\", ""];
        let mut set = Data::new();
        for k in odd {
            set.insert(
                k.into(),
                if k == "n" {
                    json!(null)
                } else {
                    json!({"v": k, "x": null})
                },
            );
        }
        let update = Change {
            kind: SaveKind::Update,
            set: set.clone(),
            ..create.clone()
        };
        assert_eq!(store.save(&key, &update).await.ok(), Some(SaveOutcome::Saved));
        // A second update of another key leaves the null value alone.
        let mut other = Data::new();
        other.insert("later".into(), json!(2));
        let update2 = Change {
            set: other,
            removed: vec!["a.b".into()],
            ..update
        };
        assert_eq!(store.save(&key, &update2).await.ok(), Some(SaveOutcome::Saved));
        let record = store.load(&key).await.expect("load").expect("present");
        let mut want = set;
        want.remove("a.b");
        want.insert("keep".into(), json!(1));
        want.insert("later".into(), json!(2));
        assert_eq!(record.data, want);
    }

    #[test]
    fn merge_args_never_hand_null_values_to_json_patch() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let mut set = Data::new();
        set.insert("n".into(), serde_json::Value::Null);
        set.insert("a\"b".into(), json!({"x": null}));
        let change = Change {
            kind: SaveKind::Update,
            set,
            removed: vec!["gone".into()],
            created: t,
            accessed: t,
            expires: t,
        };
        let (patch, members) = merge_args(&change).expect("serializes");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&patch).ok(),
            Some(json!({"gone": null, "n": null, "a\"b": null}))
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&format!("{{{members}}}")).ok(),
            Some(json!({"n": null, "a\"b": {"x": null}}))
        );
        let empty = Change {
            set: Data::new(),
            ..change
        };
        assert_eq!(merge_args(&empty).expect("serializes").1, "");
    }
}
