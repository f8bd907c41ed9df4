//! The Redis store against a real server.
//!
//! The server is the one at `CARAFE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). When it cannot be reached, each test prints
//! `skipped: no Redis at URL` and passes, unless `CI=true`, where it fails.
//! Every test works under its own random key prefix and removes its keys
//! afterwards, so the tests run in parallel and again. The fault test starts
//! (and kills) its own `redis-server` on a free port.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use carafe::store::conformance::{self, Options};
use carafe::store::RedisStore;
use carafe::store::{Change, Data, SaveKind, SaveOutcome};
use carafe::{Session, SessionId, SessionLayer, SessionStore, StoreError};
use serde_json::json;
use support::client::Client;
use support::proxy::CountingProxy;
use support::records::{key, one_key, twenty_keys};
use support::servers::{available, in_ci, redis_url, skipped, RedisUrl};
use support::{now, serve, SECRET};
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------
// the test server

/// The test server's URL, or `None` after printing the skip line (a
/// failure under `CI=true`).
fn server() -> Option<String> {
    let url = redis_url();
    let ping = raw::Raw::connect(&url).and_then(|mut redis| redis.ping());
    available("Redis", &url, ping).map(|()| url)
}

/// A random key prefix whose keys are deleted when it is dropped.
struct Prefix {
    url: String,
    name: String,
}

impl Prefix {
    fn new(url: &str) -> Self {
        Prefix {
            url: url.to_owned(),
            name: format!("carafe-test:{}", &SessionId::generate().expose()[..16]),
        }
    }

    fn store(&self) -> RedisStore {
        RedisStore::builder(self.url.as_str())
            .prefix(self.name.as_str())
            .build()
            .expect("a valid Redis URL")
    }

    fn keys(&self) -> Vec<String> {
        raw::Raw::connect(&self.url)
            .and_then(|mut redis| redis.scan(&format!("{}:*", self.name)))
            .expect("SCAN")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Best effort: the keys expire anyway.
        if let Ok(mut redis) = raw::Raw::connect(&self.url) {
            if let Ok(keys) = redis.scan(&format!("{}:*", self.name)) {
                for key in keys {
                    let _ = redis.cmd(&["DEL", &key]);
                }
            }
        }
    }
}

fn change(kind: SaveKind, set: Data, removed: &[&str], t: OffsetDateTime, expires: OffsetDateTime) -> Change {
    Change {
        kind,
        set,
        removed: removed.iter().map(|k| (*k).to_owned()).collect(),
        created: t,
        accessed: t,
        expires,
    }
}

// ---------------------------------------------------------------------------
// 1. conformance

#[tokio::test]
async fn conformance_suite() {
    let Some(url) = server() else { return };
    let prefixes = Arc::new(Mutex::new(Vec::new()));
    let made = prefixes.clone();
    conformance::run_with(Options::new().native_expiry(true), move || {
        let prefix = Prefix::new(&url);
        let store = prefix.store();
        made.lock().expect("not poisoned").push(prefix);
        async move { store }
    })
    .await;
    assert!(prefixes.lock().expect("not poisoned").len() >= 10);
}

/// A user's sessions on Redis: the owner's index is one sorted set per
/// owner, named by a hash (no user id in key names), with a TTL that ends
/// with its last session; a delete takes the session out, and a session
/// that changed owner is pruned from the old owner's index on the next
/// listing, after which the emptied index is gone.
#[tokio::test]
async fn the_owner_index_never_outlives_its_sessions() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let mut redis = raw::Raw::connect(&url).expect("connect");
    let t = now();
    let owned = |owner: &str, kind, expires| {
        let mut set = Data::new();
        set.insert(carafe::store::OWNER_KEY.into(), json!(owner));
        change(kind, set, &[], t, expires)
    };
    let (a, b) = (key(), key());
    for (k, secs) in [(&a, 100), (&b, 200)] {
        let created = owned("ada", SaveKind::Create, t + Duration::seconds(secs));
        assert_eq!(store.save(k, &created).await.expect("create"), SaveOutcome::Saved);
    }
    let indexes = || -> Vec<String> {
        prefix
            .keys()
            .into_iter()
            .filter(|k| k.contains(":owner:"))
            .collect()
    };
    let index = match indexes().as_slice() {
        [one] => one.clone(),
        other => panic!("one index for one owner: {other:?}"),
    };
    assert!(!index.contains("ada"), "the owner is hashed: {index}");
    let ttl = redis.pttl(&index).expect("PTTL");
    assert!(
        ttl > 100_000 && ttl <= 200_000,
        "the index expires with its last session: {ttl}"
    );
    assert_eq!(redis.int(&["ZCARD", &index]).expect("ZCARD"), 2);

    store.delete(&a).await.expect("delete");
    assert_eq!(redis.int(&["ZCARD", &index]).expect("ZCARD"), 1);

    let takeover = owned("bob", SaveKind::Update, t + Duration::seconds(300));
    assert_eq!(
        store.save(&b, &takeover).await.expect("update"),
        SaveOutcome::Saved
    );
    assert!(store.list_owned("ada", t).await.expect("list").is_empty());
    let listed = store.list_owned("bob", t).await.expect("list");
    assert_eq!(listed.iter().map(|o| &o.key).collect::<Vec<_>>(), [&b]);
    assert_eq!(indexes().len(), 1, "ada's emptied index is gone, bob's remains");
    assert_ne!(indexes()[0], index);

    store.delete(&b).await.expect("delete");
    assert!(indexes().is_empty(), "no index outlives the sessions");
}

// ---------------------------------------------------------------------------
// 2. partial writes and TTLs

#[tokio::test]
async fn a_one_key_change_writes_one_field_and_a_touch_writes_no_data() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let mut redis = raw::Raw::connect(&url).expect("connect");
    let t = now();
    let k = key();
    let rkey = store.redis_key(&k);

    let data: Data = (0..20)
        .map(|i| (format!("k{i:02}"), json!({ "value": i, "pad": "x".repeat(100) })))
        .collect();
    let outcome = store
        .save(
            &k,
            &change(SaveKind::Create, data, &[], t, t + Duration::seconds(100)),
        )
        .await;
    assert_eq!(outcome.expect("create"), SaveOutcome::Saved);

    let before = redis.hgetall(&rkey).expect("HGETALL");
    assert_eq!(
        before.len(),
        23,
        "20 data fields and 3 metadata fields: {:?}",
        before.keys()
    );
    assert_eq!(before["m:created"], t.unix_timestamp().to_string().into_bytes());
    let ttl = redis.pttl(&rkey).expect("PTTL");
    assert!(ttl > 0 && ttl <= 100_000, "PTTL after create: {ttl}");

    // Another process writes a field behind the store's back: a store that
    // rewrote the whole record would overwrite it.
    redis
        .cmd(&["HSET", &rkey, "d:k07", "\"written elsewhere\""])
        .expect("HSET");

    let mut set = Data::new();
    set.insert("k05".into(), json!("changed"));
    let update = Change {
        accessed: t + Duration::seconds(30),
        ..change(SaveKind::Update, set, &[], t, t + Duration::seconds(100))
    };
    assert_eq!(store.save(&k, &update).await.expect("update"), SaveOutcome::Saved);

    let after = redis.hgetall(&rkey).expect("HGETALL");
    let changed: Vec<&String> = after.keys().filter(|f| before.get(*f) != after.get(*f)).collect();
    assert_eq!(
        changed,
        ["d:k05", "d:k07", "m:accessed"],
        "fields that differ after a 1-key update"
    );
    assert_eq!(after["d:k05"], b"\"changed\"");
    assert_eq!(
        after["d:k07"], b"\"written elsewhere\"",
        "a field the update did not touch was rewritten"
    );
    let loaded = store.load(&k).await.expect("load").expect("a record");
    assert_eq!(loaded.data["k07"], "written elsewhere");
    assert_eq!(loaded.data.len(), 20);

    // A touch writes timestamps and the TTL, no data field.
    redis
        .cmd(&["HSET", &rkey, "d:k08", "\"also elsewhere\""])
        .expect("HSET");
    let touch = Change {
        accessed: t + Duration::seconds(60),
        ..change(SaveKind::Update, Data::new(), &[], t, t + Duration::seconds(1000))
    };
    assert!(touch.is_touch());
    assert_eq!(store.save(&k, &touch).await.expect("touch"), SaveOutcome::Saved);
    let touched = redis.hgetall(&rkey).expect("HGETALL");
    let changed: Vec<&String> = touched
        .keys()
        .filter(|f| after.get(*f) != touched.get(*f))
        .collect();
    assert_eq!(
        changed,
        ["d:k08", "m:accessed", "m:expires"],
        "fields that differ after a touch"
    );
    assert_eq!(touched["d:k08"], b"\"also elsewhere\"");
    assert_eq!(
        touched["m:accessed"],
        (t + Duration::seconds(60))
            .unix_timestamp()
            .to_string()
            .into_bytes()
    );
    let moved = redis.pttl(&rkey).expect("PTTL");
    assert!(
        moved > 100_000 && moved <= 1_000_000,
        "PTTL after a touch: {moved}"
    );

    // A removal is an HDEL of that field only.
    let remove = change(
        SaveKind::Update,
        Data::new(),
        &["k00", "k19"],
        t,
        t + Duration::seconds(1000),
    );
    assert_eq!(
        store.save(&k, &remove).await.expect("removal"),
        SaveOutcome::Saved
    );
    let removed = redis.hgetall(&rkey).expect("HGETALL");
    assert_eq!(removed.len(), 21);
    assert!(!removed.contains_key("d:k00") && !removed.contains_key("d:k19"));
    assert_eq!(removed["d:k08"], b"\"also elsewhere\"");
}

#[tokio::test]
async fn ttl_and_expiry_follow_the_change() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let mut redis = raw::Raw::connect(&url).expect("connect");
    let t = now();

    // A create whose expiry has passed leaves nothing behind, without error.
    let k = key();
    let past = change(
        SaveKind::Create,
        Data::new(),
        &[],
        t - Duration::days(2),
        t - Duration::seconds(1),
    );
    assert_eq!(
        store.save(&k, &past).await.expect("create in the past"),
        SaveOutcome::Saved
    );
    assert!(!redis.exists(&store.redis_key(&k)).expect("EXISTS"));
    assert_eq!(store.load(&k).await.expect("load"), None);

    // An update whose expiry has passed removes the record.
    let k = key();
    let live = change(SaveKind::Create, Data::new(), &[], t, t + Duration::hours(1));
    store.save(&k, &live).await.expect("create");
    let mut set = Data::new();
    set.insert("a".into(), json!(1));
    let expired = change(SaveKind::Update, set, &[], t, t - Duration::seconds(1));
    store.save(&k, &expired).await.expect("update in the past");
    assert!(!redis.exists(&store.redis_key(&k)).expect("EXISTS"));
    // ... and a later update finds it missing: nothing is brought back.
    let touch = change(SaveKind::Update, Data::new(), &[], t, t + Duration::hours(1));
    assert_eq!(store.save(&k, &touch).await.expect("touch"), SaveOutcome::Missing);
    assert!(!redis.exists(&store.redis_key(&k)).expect("EXISTS"));

    // The TTL is set at the expiry, in milliseconds.
    let k = key();
    store
        .save(
            &k,
            &change(SaveKind::Create, Data::new(), &[], t, t + Duration::hours(2)),
        )
        .await
        .expect("create");
    let ttl = redis.pttl(&store.redis_key(&k)).expect("PTTL");
    assert!(ttl > 7_190_000 && ttl <= 7_200_000, "PTTL {ttl}");

    // Nothing to reap.
    assert_eq!(
        store
            .delete_expired(t + Duration::days(365))
            .await
            .expect("delete_expired"),
        0
    );
    assert!(store.load(&k).await.expect("load").is_some());
}

#[tokio::test]
async fn user_keys_never_collide_with_metadata() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let t = now();
    let k = key();
    let data: Data = ["m:created", "m:expires", "d:x", "d:", "", "m:"]
        .iter()
        .map(|name| ((*name).to_owned(), json!(format!("user value {name}"))))
        .collect();
    store
        .save(
            &k,
            &change(SaveKind::Create, data.clone(), &[], t, t + Duration::hours(1)),
        )
        .await
        .expect("create");
    let record = store.load(&k).await.expect("load").expect("a record");
    assert_eq!(record.data, data);
    assert_eq!(record.created, t);
    assert_eq!(record.expires, t + Duration::hours(1));
}

#[tokio::test]
async fn sessions_with_thousands_of_keys() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let t = now();
    let k = key();
    let data: Data = (0..3000).map(|i| (format!("key-{i}"), json!(i))).collect();
    store
        .save(
            &k,
            &change(SaveKind::Create, data, &[], t, t + Duration::hours(1)),
        )
        .await
        .expect("create");
    let set: Data = (3000..5500).map(|i| (format!("key-{i}"), json!(i))).collect();
    let removed: Vec<String> = (0..2500).map(|i| format!("key-{i}")).collect();
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    let outcome = store
        .save(
            &k,
            &change(SaveKind::Update, set, &removed, t, t + Duration::hours(1)),
        )
        .await
        .expect("update");
    assert_eq!(outcome, SaveOutcome::Saved);
    let record = store.load(&k).await.expect("load").expect("a record");
    assert_eq!(record.data.len(), 3000);
    assert!(record.data.keys().all(|name| {
        let i: u32 = name["key-".len()..].parse().expect("a number");
        (2500..5500).contains(&i)
    }));
}

#[tokio::test]
async fn a_one_key_update_sends_a_small_fraction_of_a_whole_record() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    // A TCP proxy in front of the test server counts the bytes the store
    // sends: what it writes to Redis.
    let target = RedisUrl::parse(&url).expect("a redis:// URL");
    let proxy = CountingProxy::start(target.host.clone()).await.expect("bind");
    let store = RedisStore::builder(target.with_host(&proxy.addr.to_string()))
        .prefix(prefix.name.as_str())
        .build()
        .expect("a valid URL");
    let t = now();
    let expires = t + Duration::hours(1);

    // Warm up: connect and load the script.
    let warm = key();
    store
        .save(&warm, &change(SaveKind::Create, Data::new(), &[], t, expires))
        .await
        .expect("create");
    store
        .save(&warm, &change(SaveKind::Update, Data::new(), &[], t, expires))
        .await
        .expect("touch");

    let data = twenty_keys();
    let k = key();
    let before = proxy.sent();
    store
        .save(&k, &change(SaveKind::Create, data, &[], t, expires))
        .await
        .expect("create");
    let whole = proxy.sent() - before;

    let before = proxy.sent();
    store
        .save(&k, &change(SaveKind::Update, one_key(), &[], t, expires))
        .await
        .expect("update");
    let partial = proxy.sent() - before;

    let before = proxy.sent();
    store
        .save(&k, &change(SaveKind::Update, Data::new(), &[], t, expires))
        .await
        .expect("touch");
    let touch = proxy.sent() - before;

    assert!(whole > 2_000, "a 20-key record is over 2 kB on the wire: {whole}");
    assert!(
        partial * 8 < whole,
        "a 1-key update sent {partial} bytes, a whole 20-key record {whole}"
    );
    assert!(
        touch < partial,
        "a touch ({touch} bytes) sends less than a 1-key update ({partial})"
    );
    assert_eq!(
        store.load(&k).await.expect("load").expect("a record").data.len(),
        20
    );
}

// ---------------------------------------------------------------------------
// 3. bad data

#[tokio::test]
async fn bad_records_load_as_corrupt() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let store = prefix.store();
    let mut redis = raw::Raw::connect(&url).expect("connect");
    let meta = [
        "m:created",
        "1700000000",
        "m:accessed",
        "1700000000",
        "m:expires",
        "1700000000",
    ];

    let cases: Vec<(&str, Vec<Vec<&str>>)> = vec![
        (
            "invalid JSON in a data field",
            vec![[&["HSET", "{k}", "d:user", "{not json"][..], &meta[..]].concat()],
        ),
        (
            "missing metadata",
            vec![vec![
                "HSET",
                "{k}",
                "d:user",
                "\"ann\"",
                "m:created",
                "1700000000",
            ]],
        ),
        (
            "no metadata at all",
            vec![vec!["HSET", "{k}", "d:user", "\"ann\""]],
        ),
        (
            "garbage metadata",
            vec![vec![
                "HSET",
                "{k}",
                "m:created",
                "yesterday",
                "m:accessed",
                "1",
                "m:expires",
                "1",
            ]],
        ),
        (
            "metadata that is not a time",
            vec![vec![
                "HSET",
                "{k}",
                "m:created",
                "1e99",
                "m:accessed",
                "1",
                "m:expires",
                "99999999999999999999",
            ]],
        ),
        (
            "a field of no kind",
            vec![[&["HSET", "{k}", "user", "\"ann\""][..], &meta[..]].concat()],
        ),
        ("a plain string", vec![vec!["SET", "{k}", "{\"user\":\"ann\"}"]]),
        ("a list", vec![vec!["RPUSH", "{k}", "a", "b"]]),
        ("a set", vec![vec!["SADD", "{k}", "a"]]),
    ];
    for (what, commands) in cases {
        let k = key();
        let rkey = store.redis_key(&k);
        for command in commands {
            let command: Vec<&str> = command
                .iter()
                .map(|a| if *a == "{k}" { rkey.as_str() } else { a })
                .collect();
            redis.cmd(&command).expect("write bad data");
        }
        match store.load(&k).await {
            Err(StoreError::Corrupt(reason)) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: load answered {other:?}, want Err(Corrupt)"),
        }
        // Deleting a corrupt record works, whatever its type.
        store.delete(&k).await.expect("delete");
        assert!(!redis.exists(&rkey).expect("EXISTS"), "{what}");
    }

    // Field names that are not UTF-8 at all.
    let k = key();
    let rkey = store.redis_key(&k);
    redis
        .cmd_bytes(&[
            b"HSET",
            rkey.as_bytes(),
            b"d:\xff\xfe",
            b"1",
            b"m:created",
            b"1",
            b"m:accessed",
            b"1",
            b"m:expires",
            b"1",
        ])
        .expect("HSET");
    assert!(matches!(store.load(&k).await, Err(StoreError::Corrupt(_))));
}

// ---------------------------------------------------------------------------
// HTTP: an application, a server and a client

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

fn app(store: RedisStore, store_timeout: StdDuration) -> Router {
    let layer = SessionLayer::builder(store)
        .secret(SECRET)
        .secure(false)
        .store_timeout(store_timeout)
        .build()
        .expect("a valid layer");
    Router::new()
        .route("/", get(count))
        .route("/health", get(|| async { "ok" }))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .route("/set/{key}", post(set_key))
        .route("/keys", get(keys))
        .layer(layer)
}

fn internal(err: carafe::SessionError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn count(session: Session) -> Result<String, (StatusCode, String)> {
    let n = session.get::<u64>("count").map_err(internal)?.unwrap_or(0) + 1;
    session.insert("count", n).map_err(internal)?;
    session.save();
    Ok(format!("count: {n}"))
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<String, (StatusCode, String)> {
    session.insert("user", &form.user).map_err(internal)?;
    session.cycle_id();
    session.save();
    Ok(format!("logged in as {}", form.user))
}

async fn whoami(session: Session) -> Result<String, (StatusCode, String)> {
    Ok(session
        .get::<String>("user")
        .map_err(internal)?
        .unwrap_or_else(|| "anonymous".into()))
}

async fn logout(session: Session) -> &'static str {
    session.delete();
    "logged out"
}

async fn set_key(session: Session, Path(key): Path<String>) -> Result<String, (StatusCode, String)> {
    session.insert(key.as_str(), true).map_err(internal)?;
    session.save();
    Ok(format!("set {key}"))
}

async fn keys(session: Session) -> String {
    let mut keys = session.keys();
    keys.sort();
    keys.join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_overlapping_requests_keep_all_fifty_keys() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let addr = serve(app(prefix.store(), StdDuration::from_secs(5))).await;

    let mut client = Client::default();
    assert_eq!(client.get(addr, "/").await.body, "count: 1");
    let cookie = client.cookie.clone().expect("a session cookie");

    let requests = (0..50).map(|i| {
        let cookie = cookie.clone();
        tokio::spawn(async move {
            let mut client = Client { cookie: Some(cookie) };
            client.post(addr, &format!("/set/key-{i:02}"), "").await
        })
    });
    for request in requests.collect::<Vec<_>>() {
        let response = request.await.expect("request task");
        assert_eq!(response.status, 200, "{}", response.body);
    }

    let listed = client.get(addr, "/keys").await.body;
    let mut want: Vec<String> = (0..50).map(|i| format!("key-{i:02}")).collect();
    want.push("count".into());
    want.sort();
    assert_eq!(listed, want.join(","));
    assert_eq!(prefix.keys().len(), 1, "one hash for the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_instances_share_sessions() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    // Two stores built from one configuration, as two servers would.
    let one = serve(app(prefix.store(), StdDuration::from_secs(5))).await;
    let two = serve(app(prefix.store(), StdDuration::from_secs(5))).await;

    let mut client = Client::default();
    assert_eq!(client.get(one, "/").await.body, "count: 1");
    assert_eq!(client.get(two, "/").await.body, "count: 2");
    let before_login = client.cookie.clone();

    let response = client.post(one, "/login", "user=ann").await;
    assert_eq!(response.body, "logged in as ann");
    assert_ne!(client.cookie, before_login, "login cycles the id");
    assert_eq!(client.get(two, "/whoami").await.body, "ann");
    assert_eq!(client.get(one, "/whoami").await.body, "ann");

    // The pre-login id is gone on both.
    let mut stale = Client { cookie: before_login };
    assert_eq!(stale.get(two, "/whoami").await.body, "anonymous");

    // A logout on one is seen on the other at once, even with the old cookie.
    let logged_in = client.clone();
    assert_eq!(client.post(two, "/logout", "").await.body, "logged out");
    assert_eq!(client.cookie, None, "logout expires the cookie");
    let mut replay = logged_in.clone();
    assert_eq!(replay.get(one, "/whoami").await.body, "anonymous");
    let mut replay = logged_in;
    assert_eq!(replay.get(two, "/whoami").await.body, "anonymous");
    assert!(
        prefix.keys().is_empty(),
        "no record left after logout: {:?}",
        prefix.keys()
    );
}

#[tokio::test]
async fn a_corrupt_record_behind_a_cookie_gives_a_fresh_session() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let addr = serve(app(prefix.store(), StdDuration::from_secs(5))).await;
    let mut client = Client::default();
    assert_eq!(client.get(addr, "/").await.body, "count: 1");
    let old_cookie = client.cookie.clone();
    let keys = prefix.keys();
    assert_eq!(keys.len(), 1);

    let mut redis = raw::Raw::connect(&url).expect("connect");
    redis.cmd(&["DEL", &keys[0]]).expect("DEL");
    redis.cmd(&["SET", &keys[0], "garbage"]).expect("SET");

    let response = client.get(addr, "/").await;
    assert_eq!(
        (response.status.as_u16(), response.body.as_str()),
        (200, "count: 1")
    );
    assert_ne!(client.cookie, old_cookie, "a fresh id");
    assert!(
        !redis.exists(&keys[0]).expect("EXISTS"),
        "the corrupt record is deleted"
    );
    assert_eq!(client.get(addr, "/").await.body, "count: 2");
}

// ---------------------------------------------------------------------------
// 5. faults: a server of our own, killed and restarted

/// A `redis-server` this test started; killed when dropped.
struct OwnServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl OwnServer {
    /// Starts a server on a free port, or `None` when `redis-server` cannot
    /// be run (a failure under `CI=true`).
    async fn start() -> Option<OwnServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = OwnServer {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        match server.spawn().await {
            Ok(()) => Some(server),
            Err(err) if in_ci() => panic!("cannot start redis-server (and CI=true): {err}"),
            Err(err) => {
                skipped(format_args!("cannot start redis-server: {err}"));
                None
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> std::io::Result<()> {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + StdDuration::from_secs(10);
        loop {
            match raw::Raw::connect(&self.url()).and_then(|mut r| r.ping()) {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(StdDuration::from_millis(50)).await,
                Err(err) => return Err(err),
            }
        }
    }

    /// Writes a snapshot (so the next start loads the sessions), then kills
    /// the server without letting it shut down.
    async fn crash(&mut self) {
        raw::Raw::connect(&self.url())
            .and_then(|mut r| r.cmd(&["SAVE"]))
            .expect("SAVE");
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
        assert!(raw::Raw::connect(&self.url()).is_err(), "the server is down");
    }
}

/// Captures what `tracing` logs, for one thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

#[tokio::test]
async fn a_redis_outage_answers_500_quickly_and_recovers() {
    let Some(mut redis) = OwnServer::start().await else {
        return;
    };
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // A current-thread test: the server's tasks log on this thread too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let store_timeout = StdDuration::from_secs(1);
    let bound = store_timeout + StdDuration::from_secs(2);
    let store = RedisStore::new(&redis.url()).expect("a valid URL");
    let addr = serve(app(store, store_timeout)).await;
    let mut client = Client::default();
    assert_eq!(client.get(addr, "/").await.body, "count: 1");
    assert_eq!(client.get(addr, "/").await.body, "count: 2");
    let cookie = client.cookie.clone().expect("a session cookie");

    redis.crash().await;

    for round in 0..3 {
        for (method, path) in [("GET", "/"), ("GET", "/whoami"), ("POST", "/login")] {
            let started = Instant::now();
            let response = tokio::time::timeout(bound, client.send(addr, method, path, "user=bob"))
                .await
                .unwrap_or_else(|_| panic!("{method} {path} took longer than {bound:?} with Redis down"));
            assert_eq!(
                response.status, 500,
                "round {round}: {method} {path}: {}",
                response.body
            );
            assert!(
                response.expiring_cookie().is_none(),
                "a store outage must not expire the cookie: {:?}",
                response.set_cookies
            );
            assert_eq!(
                client.cookie.as_ref(),
                Some(&cookie),
                "the client keeps its cookie"
            );
            assert!(started.elapsed() < bound);

            let health = tokio::time::timeout(StdDuration::from_secs(1), client.get(addr, "/health"))
                .await
                .expect("/health answers at once with Redis down");
            assert_eq!((health.status.as_u16(), health.body.as_str()), (200, "ok"));
            assert!(health.set_cookies.is_empty());
        }
    }
    let logged = logs.text();
    assert!(
        logged.contains("ERROR") && logged.contains("redis"),
        "a tracing error naming the store:\n{logged}"
    );

    // Back up on the same port, with the snapshot: the same app, the same
    // cookie, the same session.
    redis.spawn().await.expect("restart redis-server");
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let response = loop {
        let response = tokio::time::timeout(bound, client.get(addr, "/"))
            .await
            .expect("no request hangs while Redis comes back");
        if response.status == 200 || Instant::now() > deadline {
            break response;
        }
        assert_eq!(response.status, 500);
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    assert_eq!(
        (response.status.as_u16(), response.body.as_str()),
        (200, "count: 3"),
        "the session survived the outage"
    );
    assert_eq!(client.get(addr, "/").await.body, "count: 4");
    assert_eq!(
        client.post(addr, "/login", "user=bob").await.body,
        "logged in as bob"
    );
    assert_eq!(client.get(addr, "/whoami").await.body, "bob");
}

// ---------------------------------------------------------------------------
// a minimal blocking Redis client, to look at (and spoil) what the store wrote

mod raw {
    use std::collections::BTreeMap;
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use crate::support::servers::RedisUrl;

    #[derive(Debug)]
    pub enum Reply {
        Status(String),
        Int(i64),
        Bulk(Option<Vec<u8>>),
        Array(Option<Vec<Reply>>),
    }

    pub struct Raw {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    fn invalid(what: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.into())
    }

    impl Raw {
        /// Connects to a `redis://[[user]:password@]host[:port][/db]` URL.
        pub fn connect(url: &str) -> io::Result<Raw> {
            let RedisUrl { userinfo, host, db } = RedisUrl::parse(url)?;
            let addr = host
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| invalid(format!("no address for {host}")))?;
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.set_write_timeout(Some(Duration::from_secs(5)))?;
            let mut raw = Raw {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            };
            if let Some(userinfo) = &userinfo {
                match userinfo.split_once(':') {
                    Some(("", password)) => raw.cmd(&["AUTH", password])?,
                    Some((user, password)) => raw.cmd(&["AUTH", user, password])?,
                    None => raw.cmd(&["AUTH", userinfo])?,
                };
            }
            if !db.is_empty() {
                raw.cmd(&["SELECT", &db])?;
            }
            Ok(raw)
        }

        pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            self.cmd_bytes(&args)
        }

        pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for arg in args {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
            self.writer.write_all(&out)?;
            self.read()
        }

        fn line(&mut self) -> io::Result<String> {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            line.strip_suffix("\r\n")
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("truncated reply line {line:?}")))
        }

        fn read(&mut self) -> io::Result<Reply> {
            let line = self.line()?;
            let (kind, rest) = line.split_at_checked(1).ok_or_else(|| invalid("empty reply"))?;
            let number = || {
                rest.parse::<i64>()
                    .map_err(|_| invalid(format!("bad number {rest:?}")))
            };
            match kind {
                "+" => Ok(Reply::Status(rest.to_owned())),
                "-" => Err(io::Error::other(format!("Redis error: {rest}"))),
                ":" => Ok(Reply::Int(number()?)),
                "$" => {
                    let Ok(len) = usize::try_from(number()?) else {
                        return Ok(Reply::Bulk(None));
                    };
                    let mut bytes = vec![0; len + 2];
                    self.reader.read_exact(&mut bytes)?;
                    bytes.truncate(len);
                    Ok(Reply::Bulk(Some(bytes)))
                }
                "*" => {
                    let Ok(len) = usize::try_from(number()?) else {
                        return Ok(Reply::Array(None));
                    };
                    (0..len)
                        .map(|_| self.read())
                        .collect::<io::Result<_>>()
                        .map(|items| Reply::Array(Some(items)))
                }
                _ => Err(invalid(format!("unknown reply {line:?}"))),
            }
        }

        pub fn ping(&mut self) -> io::Result<()> {
            match self.cmd(&["PING"])? {
                Reply::Status(pong) if pong == "PONG" => Ok(()),
                other => Err(invalid(format!("PING answered {other:?}"))),
            }
        }

        pub fn int(&mut self, args: &[&str]) -> io::Result<i64> {
            match self.cmd(args)? {
                Reply::Int(n) => Ok(n),
                other => Err(invalid(format!("{args:?} answered {other:?}"))),
            }
        }

        pub fn pttl(&mut self, key: &str) -> io::Result<i64> {
            self.int(&["PTTL", key])
        }

        pub fn exists(&mut self, key: &str) -> io::Result<bool> {
            Ok(self.int(&["EXISTS", key])? == 1)
        }

        /// A hash's fields (as text) and values.
        pub fn hgetall(&mut self, key: &str) -> io::Result<BTreeMap<String, Vec<u8>>> {
            let Reply::Array(Some(items)) = self.cmd(&["HGETALL", key])? else {
                return Err(invalid("HGETALL answered no array"));
            };
            let mut map = BTreeMap::new();
            let mut items = items.into_iter();
            while let (Some(Reply::Bulk(Some(field))), Some(Reply::Bulk(Some(value)))) =
                (items.next(), items.next())
            {
                map.insert(String::from_utf8_lossy(&field).into_owned(), value);
            }
            Ok(map)
        }

        /// Every key matching `pattern`.
        pub fn scan(&mut self, pattern: &str) -> io::Result<Vec<String>> {
            let mut cursor = "0".to_owned();
            let mut keys = Vec::new();
            loop {
                let Reply::Array(Some(mut reply)) =
                    self.cmd(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])?
                else {
                    return Err(invalid("SCAN answered no array"));
                };
                let (Some(Reply::Array(Some(batch))), Some(Reply::Bulk(Some(next)))) =
                    (reply.pop(), reply.pop())
                else {
                    return Err(invalid("SCAN answered an unexpected shape"));
                };
                keys.extend(batch.into_iter().filter_map(|item| match item {
                    Reply::Bulk(Some(key)) => String::from_utf8(key).ok(),
                    _ => None,
                }));
                cursor = String::from_utf8_lossy(&next).into_owned();
                if cursor == "0" {
                    return Ok(keys);
                }
            }
        }
    }
}

#[tokio::test]
async fn an_oversized_hash_loads_as_corrupt_and_an_oversized_save_writes_nothing() {
    let Some(url) = server() else { return };
    let prefix = Prefix::new(&url);
    let big = prefix.store();
    let small = prefix.store().max_record_bytes(1024);
    assert_eq!(small.record_limit(), 1024);
    assert_eq!(big.record_limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);
    let built = RedisStore::builder(url.as_str())
        .max_record_bytes(2048)
        .build()
        .expect("valid");
    assert_eq!(built.record_limit(), 2048);

    // A hash written by another program (or under a larger limit).
    let k = SessionId::generate().store_key();
    let value = format!("\"{}\"", "x".repeat(2000));
    let mut redis = raw::Raw::connect(&url).expect("connect");
    let redis_key = small.redis_key(&k);
    redis
        .cmd(&[
            "HSET",
            &redis_key,
            "d:big",
            &value,
            "m:created",
            "1700000000",
            "m:accessed",
            "1700000000",
            "m:expires",
            "4000000000",
        ])
        .expect("HSET");
    match small.load(&k).await {
        Err(StoreError::Corrupt(reason)) => {
            // 5 + 2002, and three metadata fields of 9, 10 and 9 bytes with 10-byte values.
            assert!(
                reason.contains("2065 bytes") && reason.contains("limit of 1024"),
                "{reason}"
            );
        }
        other => panic!("an oversized hash loaded as {other:?}"),
    }
    assert!(
        big.load(&k).await.expect("load").is_some(),
        "the larger limit reads it"
    );

    // An update that would grow a hash past the limit leaves it as it was.
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).expect("valid");
    let k = SessionId::generate().store_key();
    let mut one = Data::new();
    one.insert("a".into(), serde_json::json!(1));
    small
        .save(&k, &change(SaveKind::Create, one, &[], t, t + Duration::days(1)))
        .await
        .expect("create");
    let before = small.load(&k).await.expect("load").expect("present");
    let mut grow = Data::new();
    grow.insert("big".into(), serde_json::json!("x".repeat(2000)));
    match small
        .save(&k, &change(SaveKind::Update, grow, &[], t, t + Duration::days(2)))
        .await
    {
        Err(StoreError::TooLarge { size, limit }) => assert!(limit == 1024 && size > 2000, "{size}"),
        other => panic!("an oversized update answered {other:?}"),
    }
    assert_eq!(small.load(&k).await.expect("load"), Some(before));
}
