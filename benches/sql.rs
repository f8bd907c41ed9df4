//! Cost of the SQL stores: PostgreSQL against a local server, SQLite on a
//! database file in a temporary directory. For each (`postgres/…`,
//! `sqlite/…`), on a 20-key session with ~120-byte values:
//!
//! * `load_20_keys`: one `SELECT` of the session, decoded.
//! * `save_update_1_key`: a 1-key change merged into the stored JSON.
//! * `save_touch`: an accessed-time refresh (timestamps only, no data).
//! * `load_and_save_1_key`: a request's worth: load, then a 1-key update.
//!
//! Before the timings it prints the bytes each kind of save writes: for
//! PostgreSQL what the store sends to the server (counted by a TCP proxy),
//! for SQLite the growth of the write-ahead log (whole pages).
//!
//! `cargo bench -p carafe-tests --bench sql`. PostgreSQL is `CARAFE_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); the benchmark works in a
//! schema of its own and drops it afterwards. Without a server it prints
//! `skipped: no PostgreSQL at URL` and measures SQLite alone.

#[path = "../tests/support/proxy.rs"]
mod proxy;
#[path = "../tests/support/records.rs"]
mod records;
#[path = "../tests/support/servers.rs"]
mod servers;

use std::str::FromStr;

use carafe::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use carafe::store::sqlx::{self, PgPool};
use carafe::store::{Change, Data, StoreKey};
use carafe::store::{PostgresStore, SqliteStore};
use carafe::SessionStore;
use criterion::{criterion_group, criterion_main, Criterion};
use proxy::CountingProxy;
use records::{create, data, key, now, one_key, random, twenty_keys, update};
use serde_json::json;
use tokio::runtime::Runtime;

/// Times load, 1-key update, touch, and load + update of a seeded 20-key
/// session on `store`.
fn bench_store<S: SessionStore>(c: &mut Criterion, runtime: &Runtime, group: &str, store: &S) {
    let t = now();
    let seeded: StoreKey = key();
    runtime
        .block_on(store.save(&seeded, &create(twenty_keys(), t)))
        .expect("seed a 20-key session");
    let one = update(one_key(), &[], t);
    let touch = update(Data::new(), &[], t);

    let mut group = c.benchmark_group(group);
    group.bench_function("load_20_keys", |b| {
        b.to_async(runtime)
            .iter(|| async { store.load(&seeded).await.expect("load").expect("a record") });
    });
    group.bench_function("save_update_1_key", |b| {
        b.to_async(runtime)
            .iter(|| async { store.save(&seeded, &one).await.expect("update") });
    });
    group.bench_function("save_touch", |b| {
        b.to_async(runtime)
            .iter(|| async { store.save(&seeded, &touch).await.expect("touch") });
    });
    group.bench_function("load_and_save_1_key", |b| {
        b.to_async(runtime).iter(|| async {
            store.load(&seeded).await.expect("load");
            store.save(&seeded, &one).await.expect("update")
        });
    });
    group.finish();

    runtime
        .block_on(store.delete(&seeded))
        .expect("delete the seeded session");
}

/// The saves whose size is printed: a whole-record create, a 1-key update
/// and a touch of one 20-key session.
fn saves() -> [(&'static str, Change); 3] {
    let t = now();
    [
        ("whole record (create)", create(twenty_keys(), t)),
        ("1-key update", update(one_key(), &[], t)),
        ("touch", update(Data::new(), &[], t + time::Duration::hours(1))),
    ]
}

/// Saves each of [`saves`] on a new key and reports what `written` counts
/// for each.
async fn print_bytes<S: SessionStore>(
    what: &str,
    store: &S,
    written: impl Fn() -> u64,
) -> Result<(), carafe::StoreError> {
    // Warm up: prepare the statements.
    let warm = key();
    store.save(&warm, &create(data(json!({"a": 1})), now())).await?;
    store
        .save(&warm, &update(data(json!({"b": 2})), &["a"], now()))
        .await?;
    store.save(&warm, &update(Data::new(), &[], now())).await?;
    store.delete(&warm).await?;

    let k = key();
    let mut figures = Vec::new();
    for (name, change) in saves() {
        let before = written();
        store.save(&k, &change).await?;
        figures.push((name, written() - before));
    }
    store.delete(&k).await?;
    let whole = figures[0].1 as f64;
    let figures: Vec<String> = figures
        .iter()
        .map(|(name, bytes)| format!("{name} {bytes} B ({:.1}%)", *bytes as f64 * 100.0 / whole))
        .collect();
    println!("{what} per save of a 20-key session: {}", figures.join(", "));
    Ok(())
}

/// A schema of the benchmark's own, dropped by [`drop_schema`].
async fn postgres(url: &str) -> Option<(PgPool, String)> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(url)
        .await
        .ok()?;
    let schema = random("carafe_bench_");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .ok()?;
    Some((pool, schema))
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    if let Err(err) = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(pool)
        .await
    {
        println!("could not drop the schema {schema}: {err}");
    }
}

/// Prints the bytes each save sends to PostgreSQL, through a counting proxy
/// and a one-connection pool (statements prepared once, no ping per save).
async fn postgres_bytes(url: &str, schema: &str) -> Result<(), Box<dyn std::error::Error>> {
    let options = PgConnectOptions::from_str(url)?;
    let proxy = CountingProxy::start(format!("{}:{}", options.get_host(), options.get_port())).await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options.host("127.0.0.1").port(proxy.addr.port()))
        .await?;
    let store = PostgresStore::builder(pool)
        .schema(schema)
        .table("bytes")
        .build()?;
    store.migrate().await?;
    print_bytes("postgres bytes sent", &store, || proxy.sent()).await?;
    Ok(())
}

fn postgres_benches(c: &mut Criterion, runtime: &Runtime) {
    let url = servers::postgres_url();
    let Some((pool, schema)) = runtime.block_on(postgres(&url)) else {
        servers::skip("PostgreSQL", &url);
        return;
    };
    if let Err(err) = runtime.block_on(postgres_bytes(&url, &schema)) {
        println!("could not count postgres bytes per save: {err}");
    }
    let store = PostgresStore::builder(pool.clone())
        .schema(&schema)
        .table("sessions")
        .build()
        .expect("valid names");
    match runtime.block_on(store.migrate()) {
        Ok(()) => bench_store(c, runtime, "postgres", &store),
        Err(err) => println!("could not create the postgres table: {err}"),
    }
    runtime.block_on(drop_schema(&pool, &schema));
}

fn sqlite_benches(c: &mut Criterion, runtime: &Runtime) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("sessions.db");
    let store = runtime.block_on(async {
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", file.display())).await?;
        store.migrate().await?;
        Ok::<_, carafe::StoreError>(store)
    });
    let store = store.expect("an SQLite database in a temporary directory");
    let wal = file.with_file_name("sessions.db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if let Err(err) = runtime.block_on(print_bytes("sqlite WAL bytes", &store, wal_len)) {
        println!("could not measure sqlite bytes per save: {err}");
    }
    bench_store(c, runtime, "sqlite", &store);
}

fn sql(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    postgres_benches(c, &runtime);
    sqlite_benches(c, &runtime);
}

criterion_group!(benches, sql);
criterion_main!(benches);
