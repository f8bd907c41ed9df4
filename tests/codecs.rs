//! Property tests of the codecs (issue 10, item 2): any record round-trips
//! through every store's encoding (the file store's JSON, the Redis hash
//! fields, the SQL row, the cookie store's sealed cookie), and a changed
//! byte anywhere in a signed session-id cookie or a cookie-store cookie
//! never verifies. The exhaustive single-change checks are in
//! `session/src/key.rs` and `tests/cookie_store.rs`; these draw the session,
//! the position and the new byte at random.

use carafe::__fuzz::{decode_record, decode_redis_hash, decode_sql_row, encode_redis_hash, Verifier};
use carafe::store::{Data, Record};
use carafe::{CookieStore, Key, SessionId};
use proptest::prelude::*;
use serde_json::Value;
use time::OffsetDateTime;

const NAME: &str = "__Host-carafe.sid";

/// Any JSON value a session may hold, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any record: keys of any text, values of any shape, whole-second times
/// (what every store keeps) within the years 1 to 9999.
fn record() -> impl Strategy<Value = Record> {
    let time =
        (-62_135_596_800_i64..253_402_300_799).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap());
    (
        prop::collection::btree_map(".{0,16}", value(), 0..6),
        time.clone(),
        time.clone(),
        time,
    )
        .prop_map(|(data, created, accessed, expires)| Record {
            data: data.into_iter().collect::<Data>(),
            created,
            accessed,
            expires,
        })
}

fn key() -> Key {
    Key::from_secret([7u8; 64]).unwrap()
}

/// The cookie store's plaintext for `record` (its documented form).
fn plaintext(id: &SessionId, record: &Record) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "i": id.expose(),
        "c": record.created.unix_timestamp(),
        "a": record.accessed.unix_timestamp(),
        "e": record.expires.unix_timestamp(),
        "d": record.data,
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_record_round_trips_through_every_store_encoding(record in record()) {
        // the file store's JSON
        let json = serde_json::to_vec(&record).unwrap();
        prop_assert_eq!(&decode_record(&json, usize::MAX).unwrap(), &record);
        // the Redis hash, as RESP2 and RESP3 replies
        let fields = encode_redis_hash(&record).unwrap();
        for as_map in [false, true] {
            let decoded = decode_redis_hash(fields.clone(), as_map).unwrap();
            prop_assert_eq!(decoded.as_ref(), Some(&record));
        }
        // the SQL row
        let data = serde_json::to_vec(&record.data).unwrap();
        let row = decode_sql_row(
            Some(&data),
            Some(record.created.unix_timestamp()),
            Some(record.accessed.unix_timestamp()),
            Some(record.expires.unix_timestamp()),
        )
        .unwrap();
        prop_assert_eq!(&row, &record);
        // the cookie store's sealed cookie
        let id = SessionId::generate();
        let sealed = CookieStore::__seal(&key(), NAME, 2, &plaintext(&id, &record));
        let opened = CookieStore::new().__open(NAME, &key(), &[], sealed.as_bytes());
        prop_assert_eq!(opened, Some((id, record)));
    }

    #[test]
    fn a_changed_byte_in_a_signed_cookie_never_verifies(at in any::<prop::sample::Index>(), new in 0x21u8..0x7f) {
        let verifier = Verifier::new(key(), NAME);
        let value = verifier.sign(&SessionId::generate());
        let mut bytes = value.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != new);
        bytes[i] = new;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(verifier.verify(&changed), None, "byte {} changed to {:?}", i, new as char);
    }

    #[test]
    fn a_changed_byte_in_a_cookie_store_cookie_never_opens(
        record in record(),
        at in any::<prop::sample::Index>(),
        new in 0x21u8..0x7f,
    ) {
        let id = SessionId::generate();
        let sealed = CookieStore::__seal(&key(), NAME, 2, &plaintext(&id, &record)).into_bytes();
        let i = at.index(sealed.len());
        prop_assume!(sealed[i] != new);
        let mut changed = sealed.clone();
        changed[i] = new;
        prop_assert!(CookieStore::new().__open(NAME, &key(), &[], &changed).is_none(), "byte {} changed", i);
    }
}
