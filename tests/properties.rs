//! Property tests over every server-side store (issue 10, item 2): two
//! overlapping saves of one session, with any change sets, leave each key
//! as some serial order of the two would, so a write to a key the other
//! save does not touch is never lost.
//!
//! The two saves run concurrently (`tokio::join!`); the model is the
//! record after applying them one after the other, in either order.

mod support;

use std::collections::BTreeMap;

use carafe::store::{Change, Data, SaveKind, SessionStore};
use carafe::{MemoryStore, RedisStore};
use proptest::collection::{btree_map, btree_set};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::records::{create, key, now, random};
use support::servers::{cluster_unavailable, redis_cluster_nodes};

/// The keys the changes draw from: few, so that the two saves collide.
const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// One save's change set: keys written (with values) and keys removed.
#[derive(Debug, Clone)]
struct Writes {
    set: BTreeMap<String, Value>,
    removed: Vec<String>,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z]{0,12}".prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!({ "nested": [b, null] })),
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned)
}

fn writes() -> impl Strategy<Value = Writes> {
    (btree_map(key_name(), value(), 0..4), btree_set(key_name(), 0..3)).prop_map(|(set, removed)| Writes {
        removed: removed.into_iter().filter(|k| !set.contains_key(k)).collect(),
        set,
    })
}

fn base() -> impl Strategy<Value = BTreeMap<String, Value>> {
    btree_map(key_name(), value(), 0..5)
}

fn change(w: &Writes) -> Change {
    let t = now();
    Change {
        kind: SaveKind::Update,
        set: w.set.clone().into_iter().collect(),
        removed: w.removed.clone(),
        created: t,
        accessed: t,
        expires: t + time::Duration::days(1),
    }
}

/// The model: `base` with `first` then `second` applied.
fn serial(base: &BTreeMap<String, Value>, first: &Writes, second: &Writes) -> Data {
    let mut data: Data = base.clone().into_iter().collect();
    for w in [first, second] {
        for k in &w.removed {
            data.remove(k);
        }
        for (k, v) in &w.set {
            data.insert(k.clone(), v.clone());
        }
    }
    data
}

/// Runs one case on `store`: creates `base`, saves `a` and `b` at once,
/// and checks every key against the two serial orders.
async fn overlapping(
    store: &dyn SessionStore,
    base: &BTreeMap<String, Value>,
    a: &Writes,
    b: &Writes,
) -> Result<(), TestCaseError> {
    let k = key();
    store
        .save(&k, &create(base.clone().into_iter().collect(), now()))
        .await
        .unwrap();
    let (ca, cb) = (change(a), change(b));
    let (ra, rb) = tokio::join!(store.save(&k, &ca), store.save(&k, &cb));
    ra.unwrap();
    rb.unwrap();
    let got = store.load(&k).await.unwrap().expect("the session").data;
    let (ab, ba) = (serial(base, a, b), serial(base, b, a));
    for name in KEYS {
        let seen = got.get(name);
        prop_assert!(
            seen == ab.get(name) || seen == ba.get(name),
            "{}: key {name} is {seen:?}, serially {:?} or {:?}",
            store.name(),
            ab.get(name),
            ba.get(name)
        );
    }
    prop_assert!(got.keys().all(|k| KEYS.contains(&k.as_str())));
    store.delete(&k).await.unwrap();
    Ok(())
}

#[test]
fn overlapping_saves_match_a_serial_order_on_every_store() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores = rt.block_on(support::stores::server_stores(dir.path()));
    assert!(stores.len() >= 3);
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(base in base(), a in writes(), b in writes())| {
        for store in &stores {
            rt.block_on(overlapping(store.as_ref(), &base, &a, &b))?;
        }
    });
}

/// The same property on Redis Cluster (`CARAFE_REDIS_CLUSTER`; skipped
/// without it unless `CARAFE_REQUIRE_CLUSTER=1`), fewer cases: each is a
/// few round trips to the cluster.
#[test]
fn overlapping_saves_match_a_serial_order_on_redis_cluster() {
    let Some(nodes) = redis_cluster_nodes() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = RedisStore::cluster_builder(nodes)
        .prefix(random("carafe-props:"))
        .build()
        .unwrap();
    if let Err(err) = rt.block_on(store.ping()) {
        cluster_unavailable(format_args!("CARAFE_REDIS_CLUSTER does not answer: {err}"));
        return;
    }
    let config = ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    };
    proptest!(config, |(base in base(), a in writes(), b in writes())| {
        rt.block_on(overlapping(&store, &base, &a, &b))?;
    });
}

/// A store with the classic lost-update bug: a save reads the record,
/// merges the change, and writes the whole record back, with a pause in
/// between where the other save runs.
#[derive(Debug, Default)]
struct WholeRecordWrites(MemoryStore);

#[async_trait::async_trait]
impl SessionStore for WholeRecordWrites {
    async fn load(
        &self,
        key: &carafe::store::StoreKey,
    ) -> Result<Option<carafe::store::Record>, carafe::StoreError> {
        self.0.load(key).await
    }
    async fn save(
        &self,
        key: &carafe::store::StoreKey,
        change: &Change,
    ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
        if change.kind == SaveKind::Create {
            return self.0.save(key, change).await;
        }
        let Some(mut record) = self.0.load(key).await? else {
            return Ok(carafe::store::SaveOutcome::Missing);
        };
        change.apply(&mut record);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let whole = Change {
            set: record.data,
            removed: KEYS.iter().map(|k| (*k).to_owned()).collect(),
            ..change.clone()
        };
        let whole = Change {
            removed: whole
                .removed
                .into_iter()
                .filter(|k| !whole.set.contains_key(k))
                .collect(),
            ..whole
        };
        self.0.save(key, &whole).await
    }
    async fn delete(&self, key: &carafe::store::StoreKey) -> Result<(), carafe::StoreError> {
        self.0.delete(key).await
    }
    async fn cycle(
        &self,
        from: &carafe::store::StoreKey,
        to: &carafe::store::StoreKey,
        change: &Change,
    ) -> Result<carafe::store::SaveOutcome, carafe::StoreError> {
        self.0.cycle(from, to, change).await
    }
    async fn take_prefixed(
        &self,
        key: &carafe::store::StoreKey,
        prefix: &str,
    ) -> Result<carafe::store::Data, carafe::StoreError> {
        self.0.take_prefixed(key, prefix).await
    }
    async fn delete_expired(&self, now: time::OffsetDateTime) -> Result<u64, carafe::StoreError> {
        self.0.delete_expired(now).await
    }
    fn name(&self) -> &'static str {
        "whole-record-writes"
    }
}

/// The property is not vacuous: it catches a store that loses a write.
#[test]
fn the_property_catches_a_store_that_loses_writes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = WholeRecordWrites::default();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let found = runner.run(&(base(), writes(), writes()), |(base, a, b)| {
        rt.block_on(overlapping(&store, &base, &a, &b))
    });
    assert!(found.is_err(), "the lost update went unnoticed");
}
