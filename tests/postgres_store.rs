//! `PostgresStore` against a real PostgreSQL server: the conformance suite,
//! partial writes (and the bytes a save sends), bad rows, batched reaping,
//! the reaper, and the store behind the session layer over real sockets
//! (overlapping requests, two app instances, an unreachable database, a
//! statement timeout).
//!
//! The server is found through `CARAFE_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without a server each test
//! prints `skipped: no PostgreSQL at URL` and passes, unless `CI=true`, where
//! it fails. Each test works in its own schema (dropped at the end), so the
//! tests run in parallel and again.

mod support;

#[allow(dead_code)]
#[path = "../examples/postgres.rs"]
mod example;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use carafe::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use carafe::store::sqlx::{self, Connection, PgConnection, PgPool};
use carafe::store::{conformance, PostgresStore, PostgresStoreBuilder};
use carafe::store::{Change, Data, SaveOutcome, StoreKey};
use carafe::{ConfigError, MemoryStore, MockClock, Reaper, SessionLayer, SessionStore, StoreError};
use http::StatusCode;
use serde_json::{json, Value};
use support::apps::{app, fifty_overlapping_requests, one_session_on_two_instances};
use support::client::cookie_of;
use support::proxy::CountingProxy;
use support::records::{create, data, key, one_key, random, twenty_keys, update};
use support::servers::{available, in_ci, postgres_url, skip};
use support::{http, now, serve, SECRET};
use time::{Duration, OffsetDateTime};

/// A schema of its own on the test server; dropped, with everything in
/// it, when the guard is dropped (also when the test fails).
struct Db {
    pool: PgPool,
    url: String,
    schema: String,
}

impl Db {
    /// Connects, or returns `None` after printing the skip line (and
    /// panics under `CI=true`).
    async fn new() -> Option<Db> {
        // Once a test found no server, the others skip without waiting.
        static UNREACHABLE: AtomicBool = AtomicBool::new(false);
        let url = postgres_url();
        if UNREACHABLE.load(Ordering::Relaxed) && !in_ci() {
            skip("PostgreSQL", &url);
            return None;
        }
        let connected = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(StdDuration::from_secs(3))
            .connect(&url)
            .await;
        if connected.is_err() {
            UNREACHABLE.store(true, Ordering::Relaxed);
        }
        let pool = available("PostgreSQL", &url, connected)?;
        let schema = random("carafe_test_");
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&pool)
            .await
            .expect("create schema");
        Some(Db { pool, url, schema })
    }

    /// A builder for a store on a new table in this schema.
    fn builder(&self) -> PostgresStoreBuilder {
        self.builder_on(self.pool.clone())
    }

    fn builder_on(&self, pool: PgPool) -> PostgresStoreBuilder {
        PostgresStore::builder(pool)
            .schema(&self.schema)
            .table(random("sessions_"))
    }

    /// A migrated store on a new table in this schema.
    async fn store(&self) -> PostgresStore {
        let store = self.builder().build().expect("valid names");
        store.migrate().await.expect("migrate");
        store
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, store: &PostgresStore, filter: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {} WHERE {filter}", quoted(store));
        sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // The test's runtime may be the one dropping us: clean up on a
        // thread with a runtime and a connection of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = sqlx::query("SET lock_timeout = '5s'").execute(&mut conn).await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The store's table, quoted for SQL in tests.
fn quoted(store: &PostgresStore) -> String {
    let (schema, table) = store.table().split_once('.').expect("schema.table");
    format!("\"{schema}\".\"{table}\"")
}

// ---------------------------------------------------------------------------
// the store

#[tokio::test]
async fn conformance_suite() {
    let Some(db) = Db::new().await else { return };
    conformance::run(|| db.store()).await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_makes_the_documented_schema() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    store.migrate().await.expect("second migrate");
    assert_eq!(store.name(), "postgres");
    let (schema, table) = store.table().split_once('.').expect("schema.table");
    assert_eq!(schema, db.schema);
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
         ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&db.pool)
    .await
    .expect("columns");
    let columns: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "text", "NO"),
            ("data", "jsonb", "NO"),
            ("created_at", "timestamp with time zone", "NO"),
            ("accessed_at", "timestamp with time zone", "NO"),
            ("expires_at", "timestamp with time zone", "NO"),
            ("owner", "text", "YES"),
        ]
    );
    let owner_index: Option<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexname = $3",
    )
    .bind(schema)
    .bind(table)
    .bind(format!("{table}_owner_idx"))
    .fetch_optional(&db.pool)
    .await
    .expect("owner index");
    assert!(
        owner_index.as_deref().is_some_and(|d| d.contains("(owner)")),
        "{owner_index:?}"
    );
    let index: Option<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexname = $3",
    )
    .bind(schema)
    .bind(table)
    .bind(format!("{table}_expires_at_idx"))
    .fetch_optional(&db.pool)
    .await
    .expect("index");
    assert!(
        index.as_deref().is_some_and(|d| d.contains("(expires_at)")),
        "{index:?}"
    );

    // Several servers migrating at once.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = PostgresStore::builder(db.pool.clone())
                .schema(&db.schema)
                .table("raced")
                .build()
                .expect("valid");
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("concurrent migrate");
    }
}

/// A table made before the `owner` column existed gains it (and its
/// index) on `migrate`, and the rows already in it are listed by owner.
#[tokio::test]
async fn migrate_upgrades_an_old_table_with_the_owner_column() {
    let Some(db) = Db::new().await else { return };
    let table = random("old_sessions_");
    let t = format!("\"{}\".\"{table}\"", db.schema);
    db.exec(&format!(
        "CREATE TABLE {t} (id text PRIMARY KEY, data jsonb NOT NULL, created_at timestamptz NOT NULL, \
         accessed_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)"
    ))
    .await;
    let (ada, other) = (key(), key());
    for (k, owner) in [(&ada, "ada"), (&other, "bob")] {
        db.exec(&format!(
            "INSERT INTO {t} VALUES ('{}', '{{\"carafe.owner\": \"{owner}\"}}', now(), now(), \
             now() + interval '1 day')",
            k.as_str()
        ))
        .await;
    }
    let store = db.builder().table(&table).build().expect("valid");
    store.migrate().await.expect("migrate upgrades");
    store.migrate().await.expect("second migrate");
    let listed = store.list_owned("ada", now()).await.expect("list");
    assert_eq!(listed.iter().map(|o| &o.key).collect::<Vec<_>>(), [&ada]);
    let indexed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexname = $3",
    )
    .bind(&db.schema)
    .bind(&table)
    .bind(format!("{table}_owner_idx"))
    .fetch_one(&db.pool)
    .await
    .expect("index");
    assert_eq!(indexed, 1);
}

#[tokio::test]
async fn default_schema_is_public() {
    let Some(db) = Db::new().await else { return };
    let table = random("carafe_test_public_");
    let store = PostgresStore::builder(db.pool.clone())
        .table(&table)
        .build()
        .expect("valid");
    assert_eq!(store.table(), format!("public.{table}"));
    let result = store.migrate().await;
    let k = key();
    let saved = store.save(&k, &create(Data::new(), now())).await;
    let loaded = store.load(&k).await;
    db.exec(&format!("DROP TABLE IF EXISTS public.\"{table}\"")).await;
    result.expect("migrate");
    assert_eq!(saved.ok(), Some(SaveOutcome::Saved));
    assert!(loaded.expect("load").is_some());
    assert_eq!(
        PostgresStore::new(db.pool.clone()).table(),
        "public.carafe_sessions"
    );
}

#[tokio::test]
async fn names_are_validated_before_any_sql() {
    // A lazy pool never connects: this test needs no server.
    let pool = PgPoolOptions::new()
        .connect_lazy(&postgres_url())
        .expect("a valid URL");
    for table in [
        "",
        "1x",
        "x\"; DROP TABLE users; --",
        "a.b",
        "a b",
        "ü",
        &"t".repeat(49),
    ] {
        let err = PostgresStore::builder(pool.clone())
            .table(table)
            .build()
            .expect_err(table);
        assert!(
            matches!(err, ConfigError::Store(ref m) if m.contains("table")),
            "{err}"
        );
    }
    for schema in ["", "pg catalog", "x'y", "a;b"] {
        let err = PostgresStore::builder(pool.clone())
            .schema(schema)
            .build()
            .expect_err(schema);
        assert!(
            matches!(err, ConfigError::Store(ref m) if m.contains("schema")),
            "{err}"
        );
    }
    assert!(matches!(
        PostgresStore::builder(pool.clone()).delete_batch_size(0).build(),
        Err(ConfigError::NonPositive { .. })
    ));
    let store = PostgresStore::builder(pool)
        .schema("Mixed_Case")
        .table("T1")
        .build()
        .expect("valid");
    assert_eq!(store.table(), "Mixed_Case.T1");
}

#[tokio::test]
async fn connect_sets_a_statement_timeout() {
    let Some(_db) = Db::new().await else { return };
    let store = PostgresStore::connect(&postgres_url()).await.expect("connect");
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .expect("show");
    assert_eq!(timeout, "5s");
    assert!(PostgresStore::connect("not a url").await.is_err());
}

#[tokio::test]
async fn partial_update_changes_only_its_keys() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let t = now();
    let k = key();
    let initial: Data = (0..20)
        .map(|i| (format!("key{i}"), json!({"n": i, "text": "x".repeat(100)})))
        .collect();
    store.save(&k, &create(initial.clone(), t)).await.expect("create");

    // Another server (another pool) writes its own key meanwhile.
    let other_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("second pool");
    let other = PostgresStore::builder(other_pool)
        .schema(&db.schema)
        .table(store.table().split_once('.').expect("dot").1)
        .build()
        .expect("valid");
    let outcome = other
        .save(&k, &update(data(json!({"theirs": true})), &[], t))
        .await
        .expect("their update");
    assert_eq!(outcome, SaveOutcome::Saved);

    // Our request changed one key and removed one.
    let outcome = store
        .save(&k, &update(data(json!({"key7": "changed"})), &["key3"], t))
        .await
        .expect("our update");
    assert_eq!(outcome, SaveOutcome::Saved);

    let record = store.load(&k).await.expect("load").expect("present");
    let mut want = initial;
    want.insert("key7".into(), json!("changed"));
    want.remove("key3");
    want.insert("theirs".into(), json!(true));
    assert_eq!(record.data, want);
    assert_eq!(record.created, t);
    assert_eq!(record.accessed, t + Duration::minutes(1));
    assert_eq!(record.expires, t + Duration::days(2));
}

#[tokio::test]
async fn null_values_and_odd_keys_survive_merges() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let t = now();
    let k = key();
    store
        .save(&k, &create(data(json!({"keep": 1})), t))
        .await
        .expect("create");
    let odd = [
        "a.b",
        "a\"b",
        "it's",
        "back\\slash",
        "ключ",
        "日本",
        "😀",
        "$[0]",
        "{}",
        "",
        " ",
    ];
    let mut set = Data::new();
    set.insert("null".into(), Value::Null);
    set.insert("nested_null".into(), json!({"x": null, "y": [null]}));
    set.insert("u64_max".into(), json!(u64::MAX));
    set.insert("i64_min".into(), json!(i64::MIN));
    set.insert("float".into(), json!(0.1 + 0.2));
    set.insert("tiny".into(), json!(5e-324));
    set.insert("huge".into(), json!(1e300));
    set.insert("braces".into(), json!("}{,\"}"));
    for name in odd {
        set.insert(name.into(), json!({"key": name}));
    }
    store
        .save(&k, &update(set.clone(), &[], t))
        .await
        .expect("update");
    // A later update of other keys keeps the null values.
    store
        .save(
            &k,
            &update(data(json!({"later": 2})), &["a.b", "a\"b", "ключ"], t),
        )
        .await
        .expect("second update");
    let record = store.load(&k).await.expect("load").expect("present");
    let mut want = set;
    for name in ["a.b", "a\"b", "ключ"] {
        want.remove(name);
    }
    want.insert("keep".into(), json!(1));
    want.insert("later".into(), json!(2));
    assert_eq!(record.data, want);
    assert_eq!(record.data.get("null"), Some(&Value::Null));

    // A value set to null over an existing value stays as null.
    store
        .save(&k, &update(data(json!({"keep": null})), &[], t))
        .await
        .expect("null over a value");
    let record = store.load(&k).await.expect("load").expect("present");
    assert_eq!(record.data.get("keep"), Some(&Value::Null));
}

#[tokio::test]
async fn bad_rows_load_as_corrupt_without_panicking() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let t = quoted(&store);
    db.exec(&format!(
        "ALTER TABLE {t} ALTER COLUMN data DROP NOT NULL, \
         ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN accessed_at DROP NOT NULL"
    ))
    .await;
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let rows: Vec<(String, String, &str)> = vec![
        ("'[1, 2]'".into(), "now()".into(), "array"),
        ("'\"text\"'".into(), "now()".into(), "string"),
        ("'42'".into(), "now()".into(), "number"),
        ("'null'".into(), "now()".into(), "JSON null"),
        ("'true'".into(), "now()".into(), "boolean"),
        ("NULL".into(), "now()".into(), "NULL data"),
        (format!("'{deep}'"), "now()".into(), "too deep"),
        (format!("'{{\"a\": {deep}}}'"), "now()".into(), "too deep inside"),
        ("'{}'".into(), "'infinity'".into(), "infinite created_at"),
        ("'{}'".into(), "'-infinity'".into(), "minus infinite created_at"),
        ("'{}'".into(), "NULL".into(), "NULL created_at"),
        ("'{}'".into(), "'200000-01-01'".into(), "year 200000"),
        ("'{}'".into(), "'10000-01-01'".into(), "year 10000"),
    ];
    for (data, created, what) in &rows {
        let k = key();
        db.exec(&format!(
            "INSERT INTO {t} (id, data, created_at, accessed_at, expires_at) \
             VALUES ('{}', {data}, {created}, now(), 'infinity')",
            k.as_str()
        ))
        .await;
        match store.load(&k).await {
            Err(StoreError::Corrupt(message)) => assert!(!message.is_empty()),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        // The runtime deletes such a row; a save over it must not panic.
        let _ = store.save(&k, &update(data_of("x"), &[], now())).await;
        store.delete(&k).await.expect("delete a corrupt row");
        assert!(store.load(&k).await.expect("load after delete").is_none());
    }
    // An infinite expiry never counts as expired.
    assert_eq!(
        store
            .delete_expired(now() + Duration::days(365))
            .await
            .expect("reap"),
        0
    );
}

fn data_of(key: &str) -> Data {
    let mut d = Data::new();
    d.insert(key.into(), json!(1));
    d
}

/// Inserts `n` rows that expire at `expires` with one SQL statement.
async fn insert_rows(db: &Db, store: &PostgresStore, n: i64, tag: &str, expires: OffsetDateTime) {
    sqlx::query(&format!(
        "INSERT INTO {} (id, data, created_at, accessed_at, expires_at) \
         SELECT md5($1 || i::text) || md5(i::text || $1), '{{}}', $2, $2, $2 \
         FROM generate_series(1, $3) AS i",
        quoted(store)
    ))
    .bind(tag)
    .bind(expires)
    .bind(n)
    .execute(&db.pool)
    .await
    .expect("insert rows");
}

#[tokio::test]
async fn delete_expired_works_in_batches() {
    let Some(db) = Db::new().await else { return };
    let t = now();
    for (batch, expired) in [(None, 2500), (Some(100), 2500), (Some(1000), 2000), (Some(7), 50)] {
        let builder = db.builder();
        let builder = match batch {
            Some(n) => builder.delete_batch_size(n),
            None => builder,
        };
        let store = builder.build().expect("valid");
        store.migrate().await.expect("migrate");
        insert_rows(&db, &store, expired, "old", t - Duration::hours(1)).await;
        insert_rows(&db, &store, 1, "edge", t).await;
        insert_rows(&db, &store, 5, "live", t + Duration::seconds(1)).await;
        let live: Vec<StoreKey> = (0..3).map(|_| key()).collect();
        for k in &live {
            store.save(k, &create(data_of("live"), t)).await.expect("create");
        }
        let removed = store.delete_expired(t).await.expect("delete_expired");
        assert_eq!(removed, expired as u64 + 1, "batch {batch:?}");
        assert_eq!(db.count(&store, "true").await, 5 + 3);
        for k in &live {
            assert!(store.load(k).await.expect("load").is_some());
        }
        assert_eq!(store.delete_expired(t).await.expect("again"), 0);
    }
}

#[tokio::test]
async fn reaper_removes_expired_rows_and_stops() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let t = now();
    insert_rows(&db, &store, 40, "old", t - Duration::minutes(1)).await;
    insert_rows(&db, &store, 4, "live", t + Duration::hours(1)).await;
    let reaper = Reaper::spawn_with_clock(
        Arc::new(store.clone()),
        Arc::new(MockClock::new(t)),
        StdDuration::from_millis(20),
    );
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while db.count(&store, "true").await > 4 {
        assert!(
            Instant::now() < deadline,
            "the reaper did not remove the expired rows"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    tokio::time::timeout(StdDuration::from_secs(10), reaper.shutdown())
        .await
        .expect("the reaper stops on shutdown");
    assert_eq!(db.count(&store, "true").await, 4);
}

/// The bytes one save sends to PostgreSQL through `proxy`.
async fn bytes_sent(store: &PostgresStore, proxy: &CountingProxy, k: &StoreKey, change: Change) -> u64 {
    let before = proxy.sent();
    store.save(k, &change).await.expect("save");
    proxy.sent() - before
}

/// Bytes written per save, counted on the wire: a TCP proxy between the
/// store and the server counts what the store sends (PostgreSQL protocol
/// framing included). The pool has one connection, so after a warm-up each
/// statement is prepared once and a save sends only Bind, Execute and Sync
/// with its parameters. With ~120-byte values, a 1-key update of a 20-key
/// session sends a small fraction of a whole-record write (a create of the
/// same 20 keys), and a touch sends no data at all.
#[tokio::test]
async fn a_one_key_update_sends_a_small_fraction_of_a_whole_record() {
    let Some(db) = Db::new().await else { return };
    let options = PgConnectOptions::from_str(&db.url).expect("a valid URL");
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = CountingProxy::start(target).await.expect("bind");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        // no ping before each save: count the save alone
        .test_before_acquire(false)
        .connect_with(options.host("127.0.0.1").port(proxy.addr.port()))
        .await
        .expect("a pool through the proxy");
    let store = db.builder_on(pool).build().expect("valid");
    store.migrate().await.expect("migrate");
    let t = now();

    // Warm up: prepare the insert, update and touch statements.
    let warm = key();
    store.save(&warm, &create(data_of("a"), t)).await.expect("create");
    store
        .save(&warm, &update(data_of("b"), &["a"], t))
        .await
        .expect("update");
    store
        .save(&warm, &update(Data::new(), &[], t))
        .await
        .expect("touch");

    let k = key();
    let whole = bytes_sent(&store, &proxy, &k, create(twenty_keys(), t)).await;
    let partial = bytes_sent(&store, &proxy, &k, update(one_key(), &[], t)).await;
    let touch = bytes_sent(&store, &proxy, &k, update(Data::new(), &[], t)).await;

    assert!(whole > 2_000, "a 20-key record is over 2 kB on the wire: {whole}");
    assert!(
        partial * 4 < whole,
        "a 1-key update sent {partial} bytes, a whole 20-key record {whole}"
    );
    assert!(
        touch < partial,
        "a touch ({touch} bytes) sends less than a 1-key update ({partial})"
    );
    let record = store.load(&k).await.expect("load").expect("present");
    assert_eq!(record.data.len(), 20);
    assert_eq!(record.data["field-05"], one_key()["field-05"]);
}

// ---------------------------------------------------------------------------
// through HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_overlapping_requests_keep_all_keys() {
    let Some(db) = Db::new().await else { return };
    let addr = serve(app(db.store().await)).await;
    fifty_overlapping_requests(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    // The second instance has its own pool, as a second server would.
    let other_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .expect("second pool");
    let other = PostgresStore::builder(other_pool)
        .schema(&db.schema)
        .table(store.table().split_once('.').expect("dot").1)
        .build()
        .expect("valid");
    let a = serve(app(store)).await;
    let b = serve(app(other)).await;
    one_session_on_two_instances(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_row_is_a_fresh_session_over_http() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let t = quoted(&store);
    let addr = serve(app(store.clone())).await;
    let first = http(addr, "GET", "/", None, None).await;
    let cookie = cookie_of(&first);
    assert_eq!(db.count(&store, "true").await, 1);
    db.exec(&format!("UPDATE {t} SET data = '[1, 2, 3]'")).await;
    let again = http(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, "count: 1");
    assert_eq!(db.count(&store, "jsonb_typeof(data) = 'array'").await, 0);
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Needs no server: the database is unreachable on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_answers_500_quickly_and_keeps_the_cookie() {
    // A cookie signed with the same secret, from an instance that works.
    let healthy = serve(app(MemoryStore::new())).await;
    let cookie = cookie_of(&http(healthy, "GET", "/", None, None).await);

    let port = closed_port().await;
    let pool = PgPoolOptions::new()
        .acquire_timeout(StdDuration::from_secs(1))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .expect("lazy pool");
    let store = PostgresStore::new(pool);
    let addr = serve(app(store.clone())).await;

    let started = Instant::now();
    let health = http(addr, "GET", "/health", None, None).await;
    assert_eq!((health.status, health.body.as_str()), (StatusCode::OK, "ok"));
    assert!(started.elapsed() < StdDuration::from_secs(1));

    let requests: Vec<_> = ["/", "/whoami", "/keys", "/"]
        .into_iter()
        .map(|path| {
            let cookie = cookie.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = http(addr, "GET", path, Some(&cookie), None).await;
                (path, reply, started.elapsed())
            })
        })
        .collect();
    for request in requests {
        let (path, reply, elapsed) = request.await.expect("request task");
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(
            reply.body.contains("session store unavailable"),
            "{path}: {}",
            reply.body
        );
        assert!(
            elapsed < StdDuration::from_millis(2500),
            "{path} took {elapsed:?}"
        );
        assert!(reply.set_cookies.is_empty(), "{path}: {:?}", reply.set_cookies);
    }
    // A new visitor whose session must be written: 500 as well, no panic.
    let fresh = http(addr, "GET", "/", None, None).await;
    assert_eq!(fresh.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!fresh.expires_cookie());
    assert_eq!(
        http(addr, "GET", "/health", None, None).await.status,
        StatusCode::OK
    );

    // Direct calls fail with a backend error too.
    assert!(matches!(store.load(&key()).await, Err(StoreError::Backend(_))));
    assert!(matches!(
        store.delete_expired(now()).await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_answers_500_and_the_session_survives() {
    let Some(db) = Db::new().await else { return };
    let options = PgConnectOptions::from_str(&db.url)
        .expect("url")
        .options([("statement_timeout", "300ms")]);
    let pool = PgPoolOptions::new()
        .acquire_timeout(StdDuration::from_secs(2))
        .connect_with(options)
        .await
        .expect("pool");
    let store = db.builder_on(pool).build().expect("valid");
    store.migrate().await.expect("migrate");
    let addr = serve(app(store.clone())).await;
    let cookie = cookie_of(&http(addr, "GET", "/", None, None).await);

    // Another connection holds a lock on the table.
    let mut locker = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut locker).await.expect("begin");
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", quoted(&store)))
        .execute(&mut locker)
        .await
        .expect("lock");

    let started = Instant::now();
    let reply = http(addr, "GET", "/", Some(&cookie), None).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(elapsed < StdDuration::from_millis(2500), "took {elapsed:?}");
    assert!(!reply.expires_cookie(), "{:?}", reply.set_cookies);
    match store.load(&key()).await {
        Err(err @ StoreError::Backend(_)) => {
            assert!(err.to_string().contains("statement timeout"), "{err}")
        }
        other => panic!("expected a statement timeout, got {other:?}"),
    }
    assert_eq!(
        http(addr, "GET", "/health", None, None).await.status,
        StatusCode::OK
    );

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("rollback");
    locker.close().await.expect("close");
    // The session and its cookie survived the outage.
    let reply = http(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "count: 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_contract_on_two_servers() {
    let Some(db) = Db::new().await else { return };
    let store = db.store().await;
    let layer = |store: PostgresStore| {
        SessionLayer::builder(store)
            .secret(SECRET)
            .secure(false)
            .build()
            .expect("layer")
    };
    let a = serve(example::app(layer(store.clone()))).await;
    let b = serve(example::app(layer(store.clone()))).await;

    let health = http(a, "GET", "/health", None, None).await;
    assert_eq!((health.status, health.body.as_str()), (StatusCode::OK, "ok"));
    assert!(health.set_cookies.is_empty());
    assert_eq!(db.count(&store, "true").await, 0);

    let first = http(a, "GET", "/", None, None).await;
    assert_eq!(first.body, "count: 1");
    let cookie = cookie_of(&first);
    assert_eq!(http(b, "GET", "/", Some(&cookie), None).await.body, "count: 2");
    assert_eq!(
        http(a, "GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous"
    );

    let login = http(b, "POST", "/login", Some(&cookie), Some("user=ada")).await;
    assert_eq!(login.body, "logged in as ada");
    let logged_in = cookie_of(&login);
    assert_ne!(logged_in, cookie, "login cycles the id");
    assert_eq!(
        http(a, "GET", "/whoami", Some(&logged_in), None).await.body,
        "ada"
    );
    assert_eq!(
        http(a, "GET", "/whoami", Some(&cookie), None).await.body,
        "anonymous"
    );
    assert_eq!(http(a, "GET", "/", Some(&logged_in), None).await.body, "count: 3");

    let logout = http(a, "POST", "/logout", Some(&logged_in), None).await;
    assert_eq!(logout.body, "logged out");
    assert!(logout.expires_cookie());
    assert_eq!(
        http(b, "GET", "/whoami", Some(&logged_in), None).await.body,
        "anonymous"
    );
    assert_eq!(db.count(&store, "data ? 'user'").await, 0);
}

#[tokio::test]
async fn an_oversized_row_loads_as_corrupt_and_an_oversized_save_writes_nothing() {
    let Some(db) = Db::new().await else { return };
    let big = db.store().await;
    let (schema, table) = big.table().split_once('.').expect("schema.table");
    let small = PostgresStore::builder(db.pool.clone())
        .schema(schema)
        .table(table)
        .max_record_bytes(1024)
        .build()
        .expect("valid");
    assert_eq!(small.record_limit(), 1024);
    assert_eq!(big.record_limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);

    // A row written by another program (or under a larger limit).
    let k = key();
    let value = "x".repeat(2000);
    db.exec(&format!(
        "INSERT INTO {} (id, data, created_at, accessed_at, expires_at) \
         VALUES ('{}', '{{\"big\":\"{value}\"}}', now(), now(), now() + interval '1 day')",
        quoted(&big),
        k.as_str()
    ))
    .await;
    match small.load(&k).await {
        Err(StoreError::Corrupt(reason)) => {
            assert!(
                reason.contains("2011 bytes") && reason.contains("limit of 1024"),
                "{reason}"
            );
        }
        other => panic!("an oversized row loaded as {other:?}"),
    }
    assert!(
        big.load(&k).await.expect("load").is_some(),
        "the larger limit reads it"
    );

    // A create and an update that would be too large write nothing.
    let mut grow = Data::new();
    grow.insert("big".into(), json!(value));
    let k = key();
    match small.save(&k, &create(grow.clone(), now())).await {
        Err(StoreError::TooLarge { size, limit }) => assert!(limit == 1024 && size > 2000, "{size}"),
        other => panic!("an oversized create answered {other:?}"),
    }
    assert_eq!(db.count(&big, "true").await, 1, "nothing inserted");
    small.save(&k, &create(one_key(), now())).await.expect("create");
    let before = small.load(&k).await.expect("load").expect("present");
    match small.save(&k, &update(grow, &[], now())).await {
        Err(StoreError::TooLarge { size, limit }) => assert!(limit == 1024 && size > 2000, "{size}"),
        other => panic!("an oversized update answered {other:?}"),
    }
    assert_eq!(small.load(&k).await.expect("load"), Some(before));
}
