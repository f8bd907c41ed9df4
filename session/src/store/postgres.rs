//! A PostgreSQL store (feature `postgres-store`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::{ConfigError, StoreError};
use crate::id::StoreKey;
use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome, OWNER_KEY};
use crate::store::sql::{self, map_err};
use crate::store::SessionStore;

/// How long [`PostgresStore::connect`] lets a caller wait for a pooled
/// connection before failing.
const CONNECT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The `statement_timeout` [`PostgresStore::connect`] sets on its
/// connections, unless the URL sets one.
const CONNECT_STATEMENT_TIMEOUT: &str = "5s";

/// Sessions in a PostgreSQL table, one row per session (sqlx, tokio).
///
/// Pick it when several servers must share sessions and the application
/// already runs PostgreSQL. The table (default `public.carafe_sessions`,
/// created by [`migrate`](PostgresStore::migrate)) holds:
///
/// | column | type | |
/// |---|---|---|
/// | `id` | `text primary key` | the [`StoreKey`] (a hash of the session id, never the id) |
/// | `data` | `jsonb not null` | the session's data, a JSON object |
/// | `created_at` | `timestamptz not null` | Beaker's `_creation_time` |
/// | `accessed_at` | `timestamptz not null` | Beaker's `_accessed_time`, kept as a column as Beaker's database backend does |
/// | `expires_at` | `timestamptz not null`, indexed | when [`delete_expired`](SessionStore::delete_expired) may remove the row |
///
/// A save is one statement: a create is an `INSERT … ON CONFLICT DO
/// NOTHING`; an update merges only the changed keys into the stored `jsonb`
/// (`data - removed || set`), so overlapping requests that change different
/// keys both keep their changes, and it never brings back a deleted row; a
/// touch (no data change) only rewrites the timestamps. `delete_expired`
/// deletes in batches (1000 rows by default) so that reaping a large backlog
/// never holds long locks; run a [`Reaper`](crate::Reaper) on one or more of
/// the servers. A [`cycle`](SessionStore::cycle) (a new id at login) is one
/// `UPDATE` that changes the row's `id` and merges the change, so it is
/// atomic against a concurrent logout or update of the old id.
///
/// # Timeouts
///
/// Every call first takes a connection from the pool, so the pool's
/// `acquire_timeout` bounds how long a call waits when the database is
/// unreachable (sqlx's default is 30 s; [`connect`](PostgresStore::connect)
/// uses 3 s). Set PostgreSQL's `statement_timeout` so that a statement stuck
/// behind a lock is cancelled by the server; `connect` sets 5 s. The session
/// layer additionally bounds every store call by its `store_timeout`
/// (default 5 s). With your own pool:
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::str::FromStr;
/// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// let options = PgConnectOptions::from_str("postgres://app@db.internal/app")?
///     .options([("statement_timeout", "3s")]);
/// let pool = PgPoolOptions::new()
///     .max_connections(20)
///     .acquire_timeout(std::time::Duration::from_secs(2))
///     .connect_with(options)
///     .await?;
/// let store = carafe::store::PostgresStore::new(pool);
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// # Limits
///
/// PostgreSQL's `jsonb` cannot hold the character U+0000 in a string; a save
/// with such a value fails with [`StoreError::Backend`].
///
/// # Record size limit
///
/// The limit ([`max_record_bytes`](PostgresStoreBuilder::max_record_bytes),
/// default 4 MiB) counts the `data` column as PostgreSQL prints it, in bytes
/// (`octet_length(data::text)`; `jsonb` prints `", "` and `": "` between
/// members, so this is a little more than the compact JSON). Every write
/// checks it in the database, in the statement that writes: the create's
/// `INSERT … SELECT … WHERE` and the update's and cycle's `UPDATE … WHERE`
/// require the (merged) data to fit, so an oversized save writes nothing,
/// and the check sees the row as it is when the row lock is taken (two
/// overlapping saves cannot together pass it). Only when the statement wrote
/// nothing does the store ask once more (the size the data would have) to
/// tell a conflict or a missing row from a save that is too large; a save
/// that fits costs no extra round trip. A row larger than the limit loads as
/// [`StoreError::Corrupt`] (a fresh session, with a warning naming the store
/// and the size); its data is not sent back.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Statements>,
    max_record_bytes: usize,
}

/// Builds a [`PostgresStore`] with a table name, schema or batch size other
/// than the defaults. Made by [`PostgresStore::builder`].
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let store = carafe::store::PostgresStore::builder(pool)
///     .schema("web")
///     .table("sessions")
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to make the store"]
pub struct PostgresStoreBuilder {
    pool: PgPool,
    schema: String,
    table: String,
    batch: u32,
    max_record_bytes: usize,
}

#[derive(Debug)]
struct Statements {
    qualified: String,
    lock_key: String,
    batch: u32,
    create_table: String,
    create_index: String,
    add_owner: String,
    create_owner_index: String,
    list_owned: String,
    load: String,
    insert: String,
    update: String,
    cycle: String,
    new_size: String,
    merged_size: String,
    touch: String,
    delete: String,
    reap: String,
    take_read: String,
    take_swap: String,
}

impl Statements {
    fn new(schema: &str, table: &str, batch: u32) -> Result<Self, ConfigError> {
        sql::check_ident("schema", schema)?;
        sql::check_ident("table", table)?;
        sql::check_batch(batch)?;
        let t = format!("{}.{}", sql::quote(schema), sql::quote(table));
        let index = sql::quote(&format!("{table}_expires_at_idx"));
        let owner_index = sql::quote(&format!("{table}_owner_idx"));
        let epoch = |column: &str| {
            format!("CASE WHEN isfinite({column}) THEN floor(extract(epoch FROM {column}))::int8 END")
        };
        Ok(Statements {
            qualified: format!("{schema}.{table}"),
            lock_key: format!("carafe migrate {schema}.{table}"),
            batch,
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id text PRIMARY KEY, \
                 data jsonb NOT NULL, \
                 created_at timestamptz NOT NULL, \
                 accessed_at timestamptz NOT NULL, \
                 expires_at timestamptz NOT NULL)"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)"),
            // The owner, kept by PostgreSQL itself from the data: written by
            // the statement that writes the data, moved with the row by a
            // cycle, gone with the row. Only a JSON string is an owner.
            add_owner: format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS owner text GENERATED ALWAYS AS                  (CASE WHEN jsonb_typeof(data -> '{OWNER_KEY}') = 'string'                  THEN data ->> '{OWNER_KEY}' END) STORED"
            ),
            create_owner_index: format!(
                "CREATE INDEX IF NOT EXISTS {owner_index} ON {t} (owner) WHERE owner IS NOT NULL"
            ),
            list_owned: format!(
                "SELECT id, {} AS created, {} AS accessed, {} AS expires FROM {t}                  WHERE owner = $1 AND expires_at > $2",
                epoch("created_at"),
                epoch("accessed_at"),
                epoch("expires_at"),
            ),
            // $2: the record limit. An oversized row's data is not sent.
            load: format!(
                "SELECT CASE WHEN octet_length(data::text) <= $2 THEN data END AS data, \
                 octet_length(data::text)::int8 AS size, \
                 {} AS created, {} AS accessed, {} AS expires FROM {t} WHERE id = $1",
                epoch("created_at"),
                epoch("accessed_at"),
                epoch("expires_at"),
            ),
            // $6: the record limit; an oversized create inserts nothing.
            insert: format!(
                "INSERT INTO {t} (id, data, created_at, accessed_at, expires_at) \
                 SELECT $1, $2::jsonb, $3, $4, $5 WHERE octet_length($2::jsonb::text) <= $6 \
                 ON CONFLICT (id) DO NOTHING"
            ),
            // $6: the record limit; an oversized merge changes no row.
            update: format!(
                "UPDATE {t} SET data = (data - $2::text[]) || $3::jsonb, \
                 accessed_at = $4, expires_at = $5 \
                 WHERE id = $1 AND octet_length(((data - $2::text[]) || $3::jsonb)::text) <= $6"
            ),
            // One statement moves the row: the row lock orders it against a
            // concurrent update or delete of `from`, and the primary key
            // refuses a `to` that is taken (a unique violation, Conflict).
            // $7: the record limit, as in the update.
            cycle: format!(
                "UPDATE {t} SET id = $2, data = (data - $3::text[]) || $4::jsonb, \
                 accessed_at = $5, expires_at = $6 \
                 WHERE id = $1 AND octet_length(((data - $3::text[]) || $4::jsonb)::text) <= $7"
            ),
            // After a create that inserted nothing: the size of its data.
            new_size: "SELECT octet_length($1::jsonb::text)::int8".to_owned(),
            // After an update or cycle that changed no row: the size the
            // merge would have had (no row: the row is missing).
            merged_size: format!(
                "SELECT octet_length(((data - $2::text[]) || $3::jsonb)::text)::int8 FROM {t} WHERE id = $1"
            ),
            touch: format!("UPDATE {t} SET accessed_at = $2, expires_at = $3 WHERE id = $1"),
            // take_prefixed: read the data ($2: the record limit), then
            // write it back without the taken keys only if it is still what
            // was read (a compare-and-swap on the jsonb value).
            take_read: format!("SELECT data FROM {t} WHERE id = $1 AND octet_length(data::text) <= $2"),
            take_swap: format!("UPDATE {t} SET data = $3::jsonb WHERE id = $1 AND data = $2::jsonb"),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            reap: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        })
    }
}

impl PostgresStoreBuilder {
    /// The schema the table lives in (default `public`). It must exist; a
    /// plain identifier of at most 48 ASCII letters, digits and underscores.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::builder(pool).schema("web").build()?;
    /// # Ok(()) }
    /// ```
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (default `carafe_sessions`): a plain identifier of at
    /// most 48 ASCII letters, digits and underscores. It is quoted in SQL,
    /// so it is case-sensitive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::builder(pool).table("sessions").build()?;
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
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::builder(pool).delete_batch_size(500).build()?;
    /// # Ok(()) }
    /// ```
    pub fn delete_batch_size(mut self, rows: u32) -> Self {
        self.batch = rows;
        self
    }

    /// The largest session data the store writes or reads, in bytes of
    /// `data::text` (default
    /// [`DEFAULT_MAX_RECORD_BYTES`](crate::store::DEFAULT_MAX_RECORD_BYTES),
    /// 4 MiB; see [the store's docs](PostgresStore#record-size-limit)). A
    /// save whose (merged) data would be larger fails with
    /// [`StoreError::TooLarge`] and writes nothing; a larger row loads as
    /// [`StoreError::Corrupt`], which the runtime treats as no session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::builder(pool).max_record_bytes(256 * 1024).build()?;
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
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app").unwrap();
    /// let err = carafe::store::PostgresStore::builder(pool)
    ///     .table("sessions; DROP TABLE users")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("invalid table name"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Store`] for a schema or table name that is not a plain
    /// identifier; [`ConfigError::NonPositive`] for a batch size of 0.
    pub fn build(self) -> Result<PostgresStore, ConfigError> {
        Ok(PostgresStore {
            sql: Arc::new(Statements::new(&self.schema, &self.table, self.batch)?),
            pool: self.pool,
            max_record_bytes: self.max_record_bytes,
        })
    }
}

impl PostgresStore {
    /// A store using the table `public.carafe_sessions` through `pool`.
    /// Nothing is sent to the database; call [`migrate`](Self::migrate) to
    /// create the table.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app@localhost/app").await?;
    /// let store = carafe::store::PostgresStore::new(pool);
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self::builder(pool)
            .build()
            .unwrap_or_else(|_| unreachable!("the default table name is valid"))
    }

    /// A builder, to choose the table name, schema or batch size.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::builder(pool).table("web_sessions").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            pool,
            schema: "public".into(),
            table: sql::DEFAULT_TABLE.into(),
            batch: sql::DEFAULT_DELETE_BATCH,
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Connects to `url` with a new pool and returns a store on the default
    /// table. The pool waits at most 3 s for a connection, and its
    /// connections run with `statement_timeout` 5 s unless the URL sets one
    /// (`?options=-c%20statement_timeout%3D2s`). Build the pool yourself and
    /// use [`new`](Self::new) or [`builder`](Self::builder) for other
    /// settings.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), carafe::StoreError> {
    /// let store = carafe::store::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is invalid or the database
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(map_err)?;
        if !url.contains("statement_timeout") {
            options = options.options([("statement_timeout", CONNECT_STATEMENT_TIMEOUT)]);
        }
        let pool = PgPoolOptions::new()
            .acquire_timeout(CONNECT_ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self::new(pool))
    }

    /// Creates the table and its index on `expires_at` unless they exist,
    /// and the `owner` column (generated from the data's
    /// [`OWNER_KEY`](crate::store::OWNER_KEY), for
    /// [`list_owned`](SessionStore::list_owned)) with its partial index:
    /// `ADD COLUMN IF NOT EXISTS`, so a table made by an earlier version
    /// gains the column (PostgreSQL rewrites the table once to fill it).
    /// Safe to call on every start, from several servers at once (it takes
    /// an advisory lock while it works).
    ///
    /// ```no_run
    /// # async fn example(store: carafe::store::PostgresStore) -> Result<(), carafe::StoreError> {
    /// store.migrate().await?;
    /// store.migrate().await?; // a second call changes nothing
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the database fails, for example when the
    /// schema does not exist or the role may not create tables.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&self.sql.lock_key)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(&self.sql.create_table)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for statement in [
            &self.sql.create_index,
            &self.sql.add_owner,
            &self.sql.create_owner_index,
        ] {
            sqlx::query(statement).execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    /// The pool the store uses.
    ///
    /// ```no_run
    /// # fn example(store: carafe::store::PostgresStore) {
    /// let pool: &sqlx::PgPool = store.pool();
    /// # }
    /// ```
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table, as `schema.table`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app").unwrap();
    /// let store = carafe::store::PostgresStore::new(pool);
    /// assert_eq!(store.table(), "public.carafe_sessions");
    /// # }
    /// ```
    #[must_use]
    pub fn table(&self) -> &str {
        &self.sql.qualified
    }

    /// The largest session data the store writes or reads, in bytes (see
    /// [`PostgresStoreBuilder::max_record_bytes`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = carafe::store::sqlx::PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = carafe::store::PostgresStore::new(pool);
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

    /// The answer for a create of data of `size` bytes (from a size query)
    /// that inserted nothing: [`StoreError::TooLarge`] if it is over the
    /// limit, otherwise `fits` (the conflict).
    fn unsaved(
        &self,
        size: Option<i64>,
        fits: Result<SaveOutcome, StoreError>,
    ) -> Result<SaveOutcome, StoreError> {
        match size.map(|size| usize::try_from(size).unwrap_or(usize::MAX)) {
            Some(size) if size > self.max_record_bytes => Err(StoreError::TooLarge {
                size,
                limit: self.max_record_bytes,
            }),
            _ => fits,
        }
    }

    /// Why an update or cycle of `key` changed no row: no row
    /// ([`SaveOutcome::Missing`]), or a row whose merge was too large when
    /// the statement ran. The size reported is the merge's size now (a
    /// concurrent save may have changed the row since).
    async fn merged_unsaved(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let size: Option<Option<i64>> = sqlx::query_scalar(&self.sql.merged_size)
            .bind(key.as_str())
            .bind(&change.removed)
            .bind(Json(&change.set))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match size {
            None => Ok(SaveOutcome::Missing),
            Some(size) => Err(StoreError::TooLarge {
                size: size.map_or(usize::MAX, |size| usize::try_from(size).unwrap_or(usize::MAX)),
                limit: self.max_record_bytes,
            }),
        }
    }

    fn decode(&self, row: &PgRow) -> Result<Record, StoreError> {
        sql::check_row_size(
            self.name(),
            row.try_get("size").map_err(map_err)?,
            self.max_record_bytes,
        )?;
        sql::record(
            row.try_get::<Option<serde_json::Value>, _>("data")
                .map_err(map_err)?,
            row.try_get("created").map_err(map_err)?,
            row.try_get("accessed").map_err(map_err)?,
            row.try_get("expires").map_err(map_err)?,
        )
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.sql.qualified)
            .field("delete_batch_size", &self.sql.batch)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("connections", &self.pool.size())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
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
        let query = match change.kind {
            SaveKind::Create => sqlx::query(&self.sql.insert)
                .bind(key.as_str())
                .bind(Json(&change.set))
                .bind(change.created)
                .bind(change.accessed)
                .bind(change.expires)
                .bind(self.limit_arg()),
            SaveKind::Update if change.is_touch() => sqlx::query(&self.sql.touch)
                .bind(key.as_str())
                .bind(change.accessed)
                .bind(change.expires),
            SaveKind::Update => sqlx::query(&self.sql.update)
                .bind(key.as_str())
                .bind(&change.removed)
                .bind(Json(&change.set))
                .bind(change.accessed)
                .bind(change.expires)
                .bind(self.limit_arg()),
        };
        let rows = query.execute(&self.pool).await.map_err(map_err)?.rows_affected();
        match (change.kind, rows) {
            (SaveKind::Create, 0) => {
                let size: Option<i64> = sqlx::query_scalar(&self.sql.new_size)
                    .bind(Json(&change.set))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                self.unsaved(size, Err(StoreError::Conflict))
            }
            (SaveKind::Update, 0) if change.is_touch() => Ok(SaveOutcome::Missing),
            (SaveKind::Update, 0) => self.merged_unsaved(key, change).await,
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

    /// One `UPDATE … SET id = to, data = (data - removed) || set, … WHERE
    /// id = from`: the row changes its key and merges the change in one
    /// statement. A delete of `from` that overlaps waits for the row lock
    /// and then finds no row; an update of `from` that commits first is
    /// merged, one that comes after finds no row (`Missing`). A taken `to`
    /// violates the primary key: [`StoreError::Conflict`], nothing moved.
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let result = sqlx::query(&self.sql.cycle)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(&change.removed)
            .bind(Json(&change.set))
            .bind(change.accessed)
            .bind(change.expires)
            .bind(self.limit_arg())
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected());
        match sql::cycle_outcome(result)? {
            SaveOutcome::Missing => self.merged_unsaved(from, change).await,
            saved => Ok(saved),
        }
    }

    /// Reads the row's data, and writes it back without the taken keys
    /// with a compare-and-swap (`… WHERE id = $1 AND data = <as read>`),
    /// retried when another request changed the data in between. A row
    /// over the record limit is left alone (it loads as corrupt).
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        for _ in 0..sql::TAKE_ATTEMPTS {
            let read: Option<Json<Data>> = sqlx::query_scalar(&self.sql.take_read)
                .bind(key.as_str())
                .bind(self.limit_arg())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            let Some(Json(before)) = read else {
                return Ok(Data::new());
            };
            let mut after = before.clone();
            let taken = crate::record::take_prefixed(&mut after, prefix);
            if taken.is_empty() {
                return Ok(taken);
            }
            let swapped = sqlx::query(&self.sql.take_swap)
                .bind(key.as_str())
                .bind(Json(&before))
                .bind(Json(&after))
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

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let batch = u64::from(self.sql.batch);
        let mut total = 0;
        loop {
            let rows = sqlx::query(&self.sql.reap)
                .bind(now)
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

    /// One query on the indexed `owner` column (see [the migration](PostgresStore::migrate)).
    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        let rows = sqlx::query(&self.sql.list_owned)
            .bind(owner)
            .bind(now)
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
                        row.try_get("created").map_err(map_err),
                        row.try_get("accessed").map_err(map_err),
                        row.try_get("expires").map_err(map_err),
                    ],
                )
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_validated_names() {
        let s = Statements::new("public", "carafe_sessions", 1000).expect("valid");
        assert!(s
            .load
            .contains("FROM \"public\".\"carafe_sessions\" WHERE id = $1"));
        assert!(s
            .create_index
            .contains("\"carafe_sessions_expires_at_idx\" ON \"public\".\"carafe_sessions\""));
        assert_eq!(s.qualified, "public.carafe_sessions");
        for (schema, table) in [("public", "x\"; DROP TABLE y; --"), ("a b", "t"), ("", "t")] {
            assert!(matches!(
                Statements::new(schema, table, 1000),
                Err(ConfigError::Store(_))
            ));
        }
        assert!(matches!(
            Statements::new("public", "t", 0),
            Err(ConfigError::NonPositive { .. })
        ));
    }
}
