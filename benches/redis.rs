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
//! `cargo bench --bench redis`; the server is `CARAFE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). Without a server the benchmark prints
//! `skipped: no Redis at URL` and measures nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use carafe::store::RedisStore;
use carafe::{Change, Data, SaveKind, SessionId, SessionStore, StoreKey};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn redis_url() -> String {
    std::env::var("CARAFE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

fn twenty_keys() -> Data {
    (0..20)
        .map(|i| {
            (
                format!("field-{i:02}"),
                json!({ "id": i, "text": "lorem ipsum ".repeat(8) }),
            )
        })
        .collect()
}

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

fn one_key() -> Data {
    let mut set = Data::new();
    set.insert("field-05".into(), json!({ "id": 5, "text": "changed" }));
    set
}

/// A TCP proxy that counts the bytes its clients send to the server.
/// Returns the URL to connect to and the counter.
async fn counting_proxy(url: &str) -> std::io::Result<(String, Arc<AtomicU64>)> {
    let rest = url.strip_prefix("redis://").unwrap_or(url);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (format!("{userinfo}@"), host.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:6379")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_url = format!("redis://{userinfo}{}/{path}", listener.local_addr()?);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&host).await else {
                continue;
            };
            let counter = counter.clone();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    Ok((proxy_url, sent))
}

/// The bytes one save sends.
async fn bytes_sent(
    store: &RedisStore,
    key: &StoreKey,
    sent: &AtomicU64,
    change: Change,
) -> Result<u64, carafe::StoreError> {
    let before = sent.load(Ordering::SeqCst);
    store.save(key, &change).await?;
    Ok(sent.load(Ordering::SeqCst) - before)
}

/// Prints the bytes sent by a whole-record create, a 1-key update and a
/// touch of a 20-key session.
async fn bytes_per_save(url: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (proxy_url, sent) = counting_proxy(url).await?;
    let store = RedisStore::builder(proxy_url).prefix(prefix).build()?;
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
        &sent,
        change(SaveKind::Create, twenty_keys(), expires),
    )
    .await?;
    let partial = bytes_sent(&store, &k, &sent, change(SaveKind::Update, one_key(), expires)).await?;
    let touch = bytes_sent(&store, &k, &sent, change(SaveKind::Update, Data::new(), expires)).await?;
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
        println!("skipped: no Redis at {url}");
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
