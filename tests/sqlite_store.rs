//! `SqliteStore` on database files in a temporary directory: the
//! conformance suite, partial writes with JSON `null` and odd keys, the
//! bytes a save writes, bad rows, batched reaping, the reaper, and the store
//! behind the session layer over real sockets (overlapping requests, two app
//! instances on one file, a locked database).

mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use carafe::store::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use carafe::store::sqlx::{self, Connection, SqliteConnection, SqlitePool};
use carafe::store::{conformance, SqliteStore};
use carafe::store::{Data, SaveOutcome, StoreKey};
use carafe::{ConfigError, MockClock, Reaper, SessionStore, StoreError};
use http::StatusCode;
use serde_json::{json, Value};
use support::apps::{app, fifty_overlapping_requests, one_session_on_two_instances};
use support::client::cookie_of;
use support::records::{create, data, key, one_key, random, twenty_keys, update};
use support::{http, now, serve};
use time::{Duration, OffsetDateTime};

/// A database file in a temporary directory, and a store's pool on it.
struct Db {
    dir: tempfile::TempDir,
    url: String,
    pool: SqlitePool,
}

impl Db {
    async fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sessions.db").display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        Db {
            pool: store.pool().clone(),
            dir,
            url,
        }
    }

    /// A migrated store on a new table, sharing the pool.
    async fn store(&self) -> SqliteStore {
        self.store_on(self.pool.clone(), &random("sessions_")).await
    }

    async fn store_on(&self, pool: SqlitePool, table: &str) -> SqliteStore {
        let store = SqliteStore::builder(pool)
            .table(table)
            .build()
            .expect("valid name");
        store.migrate().await.expect("migrate");
        store
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, store: &SqliteStore, filter: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\" WHERE {filter}", store.table());
        sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

// ---------------------------------------------------------------------------
// the store

#[tokio::test]
async fn conformance_suite_on_a_file() {
    let db = Db::new().await;
    conformance::run(|| db.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_a_file_multi_thread() {
    let db = Db::new().await;
    conformance::run(|| db.store()).await;
}

#[tokio::test]
async fn conformance_suite_in_memory() {
    conformance::run(|| async {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("memory");
        store.migrate().await.expect("migrate");
        store
    })
    .await;
}

/// A table made before the `owner` column existed gains it (and its
/// index) on `migrate`, and the rows already in it are listed by owner.
#[tokio::test]
async fn migrate_upgrades_an_old_table_with_the_owner_column() {
    let db = Db::new().await;
    let table = random("old_sessions_");
    db.exec(&format!(
        "CREATE TABLE \"{table}\" (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, \
         created_at INTEGER NOT NULL, accessed_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    ))
    .await;
    let t = now();
    let (ada, other) = (key(), key());
    for (k, owner) in [(&ada, "ada"), (&other, "bob")] {
        db.exec(&format!(
            "INSERT INTO \"{table}\" VALUES ('{id}', '{{\"carafe.owner\":\"{owner}\"}}', {at}, {at}, {until})",
            id = k.as_str(),
            at = t.unix_timestamp(),
            until = (t + Duration::days(1)).unix_timestamp(),
        ))
        .await;
    }
    // A corrupt row (not JSON) does not stop the upgrade.
    db.exec(&format!(
        "INSERT INTO \"{table}\" VALUES ('{}', 'not json', 0, 0, 0)",
        key().as_str()
    ))
    .await;
    let store = db.store_on(db.pool.clone(), &table).await;
    store.migrate().await.expect("second migrate");
    let listed = store.list_owned("ada", t).await.expect("list");
    assert_eq!(listed.iter().map(|o| &o.key).collect::<Vec<_>>(), [&ada]);
    let index: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1")
            .bind(format!("{table}_owner_idx"))
            .fetch_optional(&db.pool)
            .await
            .expect("index");
    assert!(index.is_some_and(|sql| sql.contains("(owner)")));
}

#[tokio::test]
async fn connect_migrate_and_schema() {
    let db = Db::new().await;
    let store = SqliteStore::new(db.pool.clone());
    assert_eq!(store.table(), "carafe_sessions");
    assert_eq!(store.name(), "sqlite");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("second migrate");
    let columns: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info('carafe_sessions')")
            .fetch_all(&db.pool)
            .await
            .expect("columns");
    let columns: Vec<(&str, &str, i64, i64)> = columns
        .iter()
        .map(|(n, t, nn, pk)| (n.as_str(), t.as_str(), *nn, *pk))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "TEXT", 1, 1),
            ("data", "TEXT", 1, 0),
            ("created_at", "INTEGER", 1, 0),
            ("accessed_at", "INTEGER", 1, 0),
            ("expires_at", "INTEGER", 1, 0),
        ]
    );
    let index: Option<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'carafe_sessions_expires_at_idx'",
    )
    .fetch_optional(&db.pool)
    .await
    .expect("index");
    assert!(index.is_some_and(|sql| sql.contains("(expires_at)")));
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&db.pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");

    // A second process opening the same file sees the same table.
    let again = SqliteStore::connect(&db.url).await.expect("reconnect");
    again.migrate().await.expect("migrate again");
    let k = key();
    store
        .save(&k, &create(data(json!({"a": 1})), now()))
        .await
        .expect("create");
    assert!(again.load(&k).await.expect("load").is_some());

    assert!(SqliteStore::connect("sqlite:///nonexistent-dir/x/y.db")
        .await
        .is_err());
    assert!(SqliteStore::connect("mysql://nope").await.is_err());
}

#[tokio::test]
async fn in_memory_database_stays_alive_on_one_connection() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("memory");
    store.migrate().await.expect("migrate");
    let k = key();
    store
        .save(&k, &create(data(json!({"a": 1})), now()))
        .await
        .expect("create");
    let clone = store.clone();
    assert!(clone.load(&k).await.expect("load").is_some());
    // A second in-memory store is a different database.
    let other = SqliteStore::connect("sqlite::memory:").await.expect("memory");
    other.migrate().await.expect("migrate");
    assert!(other.load(&k).await.expect("load").is_none());
}

#[tokio::test]
async fn names_are_validated_before_any_sql() {
    let pool = SqlitePoolOptions::new()
        .connect_lazy("sqlite::memory:")
        .expect("lazy pool");
    for table in [
        "",
        "1x",
        "x\"; DROP TABLE users; --",
        "a.b",
        "a b",
        "ü",
        &"t".repeat(49),
    ] {
        let err = SqliteStore::builder(pool.clone())
            .table(table)
            .build()
            .expect_err(table);
        assert!(
            matches!(err, ConfigError::Store(ref m) if m.contains("table")),
            "{err}"
        );
    }
    assert!(matches!(
        SqliteStore::builder(pool).delete_batch_size(0).build(),
        Err(ConfigError::NonPositive { .. })
    ));
}

#[tokio::test]
async fn partial_update_changes_only_its_keys() {
    let db = Db::new().await;
    let store = db.store().await;
    let t = now();
    let k = key();
    let initial: Data = (0..20)
        .map(|i| (format!("key{i}"), json!({"n": i, "text": "x".repeat(100)})))
        .collect();
    store.save(&k, &create(initial.clone(), t)).await.expect("create");

    // Another process (another pool on the file) writes its own key.
    let other_pool = SqlitePool::connect(&db.url).await.expect("second pool");
    let other = db.store_on(other_pool, store.table()).await;
    let outcome = other
        .save(&k, &update(data(json!({"theirs": true})), &[], t))
        .await
        .expect("their update");
    assert_eq!(outcome, SaveOutcome::Saved);

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
async fn null_values_odd_keys_and_numbers_survive_merges() {
    let db = Db::new().await;
    let store = db.store().await;
    let t = now();
    let k = key();
    store
        .save(&k, &create(data(json!({"keep": 1, "gone": 2})), t))
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
        "$.x",
        "{}",
        "",
        " ",
        "tab\there",
        "nul\u{0}key",
        "\u{7f}\u{1b}",
    ];
    let mut set = Data::new();
    set.insert("null".into(), Value::Null);
    set.insert("nested_null".into(), json!({"x": null, "y": [null, {"z": null}]}));
    set.insert("nul_value".into(), json!("a\u{0}b"));
    set.insert("u64_max".into(), json!(u64::MAX));
    set.insert("i64_min".into(), json!(i64::MIN));
    set.insert("float".into(), json!(0.1 + 0.2));
    set.insert("tiny".into(), json!(5e-324));
    set.insert("huge".into(), json!(1.7976931348623157e308));
    set.insert("braces".into(), json!("}{,\"}"));
    for name in odd {
        set.insert(name.into(), json!({"key": name}));
    }
    store
        .save(&k, &update(set.clone(), &["gone"], t))
        .await
        .expect("update");
    let record = store.load(&k).await.expect("load").expect("present");
    let mut want = set.clone();
    want.insert("keep".into(), json!(1));
    assert_eq!(record.data, want);

    // A later update of other keys keeps the null values, and removes odd keys.
    store
        .save(
            &k,
            &update(data(json!({"later": 2})), &["a.b", "a\"b", "ключ", ""], t),
        )
        .await
        .expect("second update");
    let record = store.load(&k).await.expect("load").expect("present");
    for name in ["a.b", "a\"b", "ключ", ""] {
        want.remove(name);
    }
    want.insert("later".into(), json!(2));
    assert_eq!(record.data, want);
    assert_eq!(record.data.get("null"), Some(&Value::Null));

    // Null over a value, a value over null, and an update that empties the session.
    store
        .save(
            &k,
            &update(data(json!({"keep": null, "null": "now set"})), &[], t),
        )
        .await
        .expect("swap");
    let record = store.load(&k).await.expect("load").expect("present");
    assert_eq!(record.data.get("keep"), Some(&Value::Null));
    assert_eq!(record.data.get("null"), Some(&json!("now set")));
    let all: Vec<String> = record.data.keys().cloned().collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    store
        .save(&k, &update(Data::new(), &all, t))
        .await
        .expect("empty it");
    let record = store.load(&k).await.expect("load").expect("present");
    assert!(record.data.is_empty(), "{:?}", record.data);
    store
        .save(&k, &update(data(json!({"n": null})), &[], t))
        .await
        .expect("into an empty object");
    let record = store.load(&k).await.expect("load").expect("present");
    assert_eq!(record.data, data(json!({"n": null})));
}

#[tokio::test]
async fn bad_rows_load_as_corrupt_without_panicking() {
    let db = Db::new().await;
    // A table made without the NOT NULL constraints, so that NULLs fit;
    // migrate keeps it.
    let table = random("loose_");
    db.exec(&format!(
        "CREATE TABLE \"{table}\" (id TEXT PRIMARY KEY, data TEXT, created_at INTEGER, \
         accessed_at INTEGER, expires_at INTEGER)"
    ))
    .await;
    let store = db.store_on(db.pool.clone(), &table).await;
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let rows: Vec<(String, &str, &str)> = vec![
        ("'[1, 2]'".into(), "0", "array"),
        ("'\"text\"'".into(), "0", "string"),
        ("'42'".into(), "0", "number"),
        ("'null'".into(), "0", "JSON null"),
        ("'not json at all'".into(), "0", "garbage"),
        ("'{\"a\": 1'".into(), "0", "truncated"),
        ("''".into(), "0", "empty"),
        ("NULL".into(), "0", "NULL data"),
        ("X'00FF10'".into(), "0", "blob data"),
        ("CAST(X'7B22FF223A317D' AS TEXT)".into(), "0", "invalid UTF-8"),
        ("12".into(), "0", "integer data"),
        (format!("'{deep}'"), "0", "too deep"),
        ("'{}'".into(), "NULL", "NULL created_at"),
        ("'{}'".into(), "'yesterday'", "text created_at"),
        ("'{}'".into(), "1.5", "real created_at"),
        ("'{}'".into(), "X'01'", "blob created_at"),
        ("'{}'".into(), "9223372036854775807", "created_at out of range"),
        (
            "'{}'".into(),
            "-9223372036854775808",
            "created_at out of range below",
        ),
    ];
    for (data, created, what) in &rows {
        let k = key();
        db.exec(&format!(
            "INSERT INTO \"{table}\" (id, data, created_at, accessed_at, expires_at) \
             VALUES ('{}', {data}, {created}, 0, 9000000000)",
            k.as_str()
        ))
        .await;
        match store.load(&k).await {
            Err(StoreError::Corrupt(message)) => assert!(!message.is_empty()),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        // The runtime deletes such a row; a save over it must not panic.
        let mut one = Data::new();
        one.insert("x".into(), json!(1));
        let _ = store.save(&k, &update(one, &[], now())).await;
        store.delete(&k).await.expect("delete a corrupt row");
        assert!(store.load(&k).await.expect("load after delete").is_none());
    }
    assert_eq!(db.count(&store, "1").await, 0);
}

/// Inserts `n` rows that expire at `expires` with one SQL statement.
async fn insert_rows(db: &Db, store: &SqliteStore, n: i64, tag: &str, expires: OffsetDateTime) {
    sqlx::query(&format!(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?3) \
         INSERT INTO \"{}\" (id, data, created_at, accessed_at, expires_at) \
         SELECT printf('%s%060x', ?1, i), '{{}}', ?2, ?2, ?2 FROM c",
        store.table()
    ))
    .bind(tag)
    .bind(expires.unix_timestamp())
    .bind(n)
    .execute(&db.pool)
    .await
    .expect("insert rows");
}

#[tokio::test]
async fn delete_expired_works_in_batches() {
    let db = Db::new().await;
    let t = now();
    for (batch, expired) in [(None, 2500), (Some(100), 2500), (Some(1000), 2000), (Some(7), 50)] {
        let builder = SqliteStore::builder(db.pool.clone()).table(random("reap_"));
        let builder = match batch {
            Some(n) => builder.delete_batch_size(n),
            None => builder,
        };
        let store = builder.build().expect("valid");
        store.migrate().await.expect("migrate");
        insert_rows(&db, &store, expired, "aaaa", t - Duration::hours(1)).await;
        insert_rows(&db, &store, 1, "bbbb", t).await;
        insert_rows(&db, &store, 5, "cccc", t + Duration::seconds(1)).await;
        let live: Vec<StoreKey> = (0..3).map(|_| key()).collect();
        for k in &live {
            store
                .save(k, &create(data(json!({"live": true})), t))
                .await
                .expect("create");
        }
        let removed = store.delete_expired(t).await.expect("delete_expired");
        assert_eq!(removed, expired as u64 + 1, "batch {batch:?}");
        assert_eq!(db.count(&store, "1").await, 5 + 3);
        for k in &live {
            assert!(store.load(k).await.expect("load").is_some());
        }
        assert_eq!(store.delete_expired(t).await.expect("again"), 0);
    }
}

#[tokio::test]
async fn reaper_removes_expired_rows_and_stops() {
    let db = Db::new().await;
    let store = db.store().await;
    let t = now();
    insert_rows(&db, &store, 40, "aaaa", t - Duration::minutes(1)).await;
    insert_rows(&db, &store, 4, "bbbb", t + Duration::hours(1)).await;
    let reaper = Reaper::spawn_with_clock(
        Arc::new(store.clone()),
        Arc::new(MockClock::new(t)),
        StdDuration::from_millis(20),
    );
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while db.count(&store, "1").await > 4 {
        assert!(
            Instant::now() < deadline,
            "the reaper did not remove the expired rows"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    tokio::time::timeout(StdDuration::from_secs(10), reaper.shutdown())
        .await
        .expect("the reaper stops on shutdown");
    assert_eq!(db.count(&store, "1").await, 4);
}

/// Bytes written per save, measured where SQLite writes them: the growth
/// of the write-ahead log (the store opens files in WAL mode; nothing
/// checkpoints the log during the test, so every commit appends to it).
///
/// SQLite writes whole pages: a commit appends one frame (the page size, 4
/// KiB here, plus a 24-byte header) for each page it changed, and a record
/// of 20 ~120-byte values fits in one page. So a 1-key update writes as many
/// bytes as rewriting all 20 values (the row's page, and the `expires_at`
/// index page as the expiry moves), a create one page more (the primary-key
/// index), and a touch the same pages again. The partial write does not make
/// SQLite write less; what it saves is the JSON handed to SQLite (one
/// member, not 20) and the merge keeps keys other requests changed
/// meanwhile. On the wire (PostgreSQL, Redis) it is a small fraction: see
/// those stores' tests.
#[tokio::test]
async fn bytes_written_per_save_are_whole_pages() {
    let db = Db::new().await;
    let store = db.store().await;
    let wal = db.dir.path().join("sessions.db-wal");
    let wal_len = || std::fs::metadata(&wal).expect("the WAL file").len();
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&db.pool)
        .await
        .expect("page size");
    let frame = page as u64 + 24;
    let t = now();

    // Warm up: the table's first row.
    store
        .save(&key(), &create(data(json!({"a": 1})), t))
        .await
        .expect("create");

    let k = key();
    let mut written = Vec::new();
    let everything: Data = twenty_keys()
        .into_iter()
        .map(|(name, _)| (name, json!({"id": 0, "text": "rewritten ".repeat(10)})))
        .collect();
    for (what, change) in [
        ("whole-record create", create(twenty_keys(), t)),
        ("1-key update", update(one_key(), &[], t)),
        ("20-key update", update(everything, &[], t)),
        ("touch", update(Data::new(), &[], t + Duration::hours(1))),
    ] {
        let before = wal_len();
        store.save(&k, &change).await.expect(what);
        let bytes = wal_len() - before;
        assert_eq!(
            bytes % frame,
            0,
            "{what}: {bytes} bytes are whole frames of {frame}"
        );
        written.push(bytes);
    }
    let [create_bytes, partial, rewrite, touch] = written[..] else {
        unreachable!()
    };
    assert!(create_bytes >= frame, "a create writes at least the row's page");
    assert!(
        partial <= rewrite,
        "a 1-key update ({partial} bytes) writes no more than rewriting every key ({rewrite})"
    );
    assert!(partial <= create_bytes, "{partial} > {create_bytes}");
    assert!(touch <= partial, "{touch} > {partial}");
    let record = store.load(&k).await.expect("load").expect("present");
    assert_eq!(record.data.len(), 20);
}

// ---------------------------------------------------------------------------
// through HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_overlapping_requests_keep_all_keys() {
    let db = Db::new().await;
    let addr = serve(app(db.store().await)).await;
    fifty_overlapping_requests(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_file() {
    let db = Db::new().await;
    let store = db.store().await;
    let other = SqliteStore::connect(&db.url).await.expect("second pool");
    let other = db.store_on(other.pool().clone(), store.table()).await;
    let a = serve(app(store)).await;
    let b = serve(app(other)).await;
    one_session_on_two_instances(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_row_is_a_fresh_session_over_http() {
    let db = Db::new().await;
    let store = db.store().await;
    let addr = serve(app(store.clone())).await;
    let cookie = cookie_of(&http(addr, "GET", "/", None, None).await);
    assert_eq!(db.count(&store, "1").await, 1);
    db.exec(&format!("UPDATE \"{}\" SET data = 'garbage'", store.table()))
        .await;
    let again = http(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, "count: 1");
    assert_eq!(db.count(&store, "data = 'garbage'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_answers_500_and_the_session_survives() {
    let db = Db::new().await;
    let options = SqliteConnectOptions::from_str(&db.url)
        .expect("url")
        .busy_timeout(StdDuration::from_millis(200));
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .expect("pool");
    let store = db.store_on(pool, &random("locked_")).await;
    let addr = serve(app(store.clone())).await;
    let cookie = cookie_of(&http(addr, "GET", "/", None, None).await);

    // Another connection holds the write lock.
    let mut locker = SqliteConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("lock");

    let started = Instant::now();
    let reply = http(addr, "GET", "/", Some(&cookie), None).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.body);
    assert!(elapsed < StdDuration::from_millis(2500), "took {elapsed:?}");
    assert!(!reply.expires_cookie(), "{:?}", reply.set_cookies);
    assert_eq!(
        http(addr, "GET", "/health", None, None).await.status,
        StatusCode::OK
    );

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("unlock");
    locker.close().await.expect("close");
    let reply = http(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "count: 2"));
}

#[tokio::test]
async fn an_oversized_row_loads_as_corrupt_and_an_oversized_save_writes_nothing() {
    let db = Db::new().await;
    let table = random("sized_");
    let big = db.store_on(db.pool.clone(), &table).await;
    let small = SqliteStore::builder(db.pool.clone())
        .table(&table)
        .max_record_bytes(1024)
        .build()
        .expect("valid");
    assert_eq!(small.record_limit(), 1024);
    assert_eq!(big.record_limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);

    // A row written by another program (or under a larger limit).
    let k = key();
    let value = "x".repeat(2000);
    db.exec(&format!(
        "INSERT INTO \"{table}\" (id, data, created_at, accessed_at, expires_at) \
         VALUES ('{}', '{{\"big\":\"{value}\"}}', 0, 0, 9000000000)",
        k.as_str()
    ))
    .await;
    match small.load(&k).await {
        Err(StoreError::Corrupt(reason)) => {
            assert!(
                reason.contains("2010 bytes") && reason.contains("limit of 1024"),
                "{reason}"
            );
        }
        other => panic!("an oversized row loaded as {other:?}"),
    }
    assert!(
        big.load(&k).await.expect("load").is_some(),
        "the larger limit reads it"
    );

    // An update that would grow a row past the limit leaves it as it was.
    let k = key();
    small.save(&k, &create(one_key(), now())).await.expect("create");
    let before = small.load(&k).await.expect("load").expect("present");
    let mut grow = Data::new();
    grow.insert("big".into(), json!(value));
    match small.save(&k, &update(grow, &[], now())).await {
        Err(StoreError::TooLarge { size, limit }) => assert!(limit == 1024 && size > 2000, "{size}"),
        other => panic!("an oversized update answered {other:?}"),
    }
    assert_eq!(small.load(&k).await.expect("load"), Some(before));
}
