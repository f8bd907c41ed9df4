//! What store tests feed a store directly: keys, changes and a realistic
//! 20-key session.
//!
//! Also used by the benchmarks (`#[path]`), so it depends on nothing else in
//! `support`.
#![allow(dead_code)]

use carafe::store::{Change, Data, SaveKind, StoreKey};
use carafe::SessionId;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// Now, in whole seconds (what the stores keep).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// A new store key.
pub fn key() -> StoreKey {
    SessionId::generate().store_key()
}

/// `prefix` and 12 random characters: a table, schema or key prefix of the
/// test's own.
pub fn random(prefix: &str) -> String {
    format!("{prefix}{}", &SessionId::generate().expose()[..12])
}

/// A JSON object as session data.
pub fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A new record with `set`, created at `t`, expiring a day later.
pub fn create(set: Data, t: OffsetDateTime) -> Change {
    Change {
        kind: SaveKind::Create,
        set,
        removed: vec![],
        created: t,
        accessed: t,
        expires: t + Duration::days(1),
    }
}

/// An update of `set` and `removed`, accessed a minute after `t`, expiring
/// two days after it.
pub fn update(set: Data, removed: &[&str], t: OffsetDateTime) -> Change {
    Change {
        kind: SaveKind::Update,
        set,
        removed: removed.iter().map(|k| (*k).to_owned()).collect(),
        created: t,
        accessed: t + Duration::minutes(1),
        expires: t + Duration::days(2),
    }
}

/// A 20-key session with realistic values: about 120 bytes of JSON each.
pub fn twenty_keys() -> Data {
    (0..20)
        .map(|i| {
            (
                format!("field-{i:02}"),
                json!({ "id": i, "text": "lorem ipsum ".repeat(8) }),
            )
        })
        .collect()
}

/// A change of one key of [`twenty_keys`].
pub fn one_key() -> Data {
    let mut set = Data::new();
    set.insert("field-05".into(), json!({ "id": 5, "text": "changed" }));
    set
}
