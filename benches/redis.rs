//! Cost of the Redis store against a local server.
//!
//! * `redis/load_20_keys`: one `HGETALL` of a 20-key session, decoded.
//! * `redis/save_update_1_key`, `redis/save_touch`: the partial-write script.
//! * `redis/load_and_save_1_key`: a request's worth: load, then a 1-key update.
//! * `redis/create_20_keys`: a new 20-key session.
//!
//! Before the timings it prints the bytes each kind of save sends to Redis
//! (counted by a TCP proxy between the store and the server): a 1-key change
//! in a 20-key session sends a small fraction of the whole record.
//!
//! `cargo bench -p carafe-tests --bench redis`; the server is `CARAFE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). Without a server the benchmark prints
//! `skipped: no Redis at URL` and measures nothing.

#[path = "../tests/support/proxy.rs"]
mod proxy;
#[path = "../tests/support/records.rs"]
mod records;
#[path = "../tests/support/servers.rs"]
mod servers;

use carafe::store::RedisStore;
use carafe::store::{Change, Data, SaveKind, StoreKey};
use carafe::{SessionId, SessionStore};
use criterion::{criterion_group, criterion_main, Criterion};
use proxy::CountingProxy;
use records::{now, one_key, twenty_keys};
use servers::{redis_url, RedisUrl};
use time::{Duration, OffsetDateTime};

fn change(kind: SaveKind, set: Data, expires: OffsetDateTime) -> Change {
    let t = now();
    Change {
        kind,
        set,
        removed: Vec::new(),
        created: t,
        accessed: t,
        expires,
    }
}

/// The bytes one save sends.
async fn bytes_sent(
    store: &RedisStore,
    key: &StoreKey,
    proxy: &CountingProxy,
    change: Change,
) -> Result<u64, carafe::StoreError> {
    let before = proxy.sent();
    store.save(key, &change).await?;
    Ok(proxy.sent() - before)
}

/// Prints the bytes sent by a whole-record create, a 1-key update and a
/// touch of a 20-key session.
async fn bytes_per_save(url: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let target = RedisUrl::parse(url)?;
    let proxy = CountingProxy::start(target.host.clone()).await?;
    let store = RedisStore::builder(target.with_host(&proxy.addr.to_string()))
        .prefix(prefix)
        .build()?;
    let expires = now() + Duration::minutes(5);
    let k = SessionId::generate().store_key();
    // Warm up: connect and load the script.
    store
        .save(&k, &change(SaveKind::Create, Data::new(), expires))
        .await?;
    store.delete(&k).await?;

    let whole = bytes_sent(
        &store,
        &k,
        &proxy,
        change(SaveKind::Create, twenty_keys(), expires),
    )
    .await?;
    let partial = bytes_sent(&store, &k, &proxy, change(SaveKind::Update, one_key(), expires)).await?;
    let touch = bytes_sent(&store, &k, &proxy, change(SaveKind::Update, Data::new(), expires)).await?;
    store.delete(&k).await?;
    println!(
        "redis bytes sent per save of a 20-key session: whole record (create) {whole} B, \
         1-key update {partial} B ({:.1}% of the whole), touch {touch} B",
        partial as f64 * 100.0 / whole as f64
    );
    Ok(())
}

fn redis(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let url = redis_url();
    let prefix = format!("carafe-bench:{}", &SessionId::generate().expose()[..16]);
    let store = runtime.block_on(async {
        let store = RedisStore::builder(url.as_str())
            .prefix(prefix.as_str())
            .build()
            .ok()?;
        store.ping().await.ok()?;
        Some(store)
    });
    let Some(store) = store else {
        servers::skip("Redis", &url);
        return;
    };

    if let Err(err) = runtime.block_on(bytes_per_save(&url, &prefix)) {
        println!("could not count bytes per save: {err}");
    }

    let seeded: StoreKey = SessionId::generate().store_key();
    let expires = now() + Duration::hours(1);
    runtime
        .block_on(store.save(&seeded, &change(SaveKind::Create, twenty_keys(), expires)))
        .expect("seed a 20-key session");

    let mut group = c.benchmark_group("redis");
    group.bench_function("load_20_keys", |b| {
        b.to_async(&runtime)
            .iter(|| async { store.load(&seeded).await.expect("load").expect("a record") });
    });
    group.bench_function("save_update_1_key", |b| {
        let update = change(SaveKind::Update, one_key(), expires);
        b.to_async(&runtime)
            .iter(|| async { store.save(&seeded, &update).await.expect("update") });
    });
    group.bench_function("save_touch", |b| {
        let touch = change(SaveKind::Update, Data::new(), expires);
        b.to_async(&runtime)
            .iter(|| async { store.save(&seeded, &touch).await.expect("touch") });
    });
    group.bench_function("load_and_save_1_key", |b| {
        let update = change(SaveKind::Update, one_key(), expires);
        b.to_async(&runtime).iter(|| async {
            store.load(&seeded).await.expect("load");
            store.save(&seeded, &update).await.expect("update")
        });
    });
    let created = std::sync::Mutex::new(Vec::new());
    group.bench_function("create_20_keys", |b| {
        // Short-lived records, deleted after the run (else Redis drops them a
        // minute later).
        let create = change(SaveKind::Create, twenty_keys(), now() + Duration::minutes(1));
        b.to_async(&runtime).iter(|| async {
            let key = SessionId::generate().store_key();
            store.save(&key, &create).await.expect("create");
            created.lock().expect("not poisoned").push(key);
        });
    });
    group.finish();

    runtime
        .block_on(store.delete(&seeded))
        .expect("delete the seeded session");
}

criterion_group!(benches, redis);
criterion_main!(benches);
