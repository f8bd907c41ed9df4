//! What the fuzz targets in `fuzz/` and the micro-benchmarks in `benches/`
//! call (feature `fuzzing`). Not public API: it only wraps internal
//! functions, and may change in any release.

use crate::error::StoreError;
use crate::id::SessionId;
use crate::key::{Key, Keys};
use crate::record::Record;

/// The session-id cookie signer and verifier the layer uses, for one key and cookie name.
#[derive(Debug, Clone)]
pub struct Verifier(Keys);

impl Verifier {
    /// A verifier with `key` as its only key, for the cookie named `cookie_name`.
    #[must_use]
    pub fn new(key: Key, cookie_name: &str) -> Self {
        Verifier(Keys::new(key, Vec::new(), cookie_name))
    }

    /// A verifier that signs with `key` and also accepts `old` keys (key
    /// rotation), for the cookie named `cookie_name`.
    #[must_use]
    pub fn with_old_keys(key: Key, old: Vec<Key>, cookie_name: &str) -> Self {
        Verifier(Keys::new(key, old, cookie_name))
    }

    /// The signed cookie value `<id>.<tag>` for `id`.
    #[must_use]
    pub fn sign(&self, id: &SessionId) -> String {
        self.0.sign(id)
    }

    /// The id in a signed cookie value, if its tag verifies.
    #[must_use]
    pub fn verify(&self, value: &str) -> Option<SessionId> {
        self.0.verify(value).map(|(id, _)| id)
    }
}

/// Decodes a record file's contents as the file store does: `Corrupt` if over `limit` bytes or not a record.
pub fn decode_record(bytes: &[u8], limit: usize) -> Result<Record, StoreError> {
    crate::store::decode_record(bytes, limit)
}

/// A Redis hash's fields and values, as bytes.
#[cfg(feature = "redis-store")]
pub type RedisPairs = crate::store::RedisPairs;

/// Decodes an `HGETALL` reply of `pairs` (field, value) as the Redis store
/// does: as an array (RESP2) or, with `as_map`, a map (RESP3).
#[cfg(feature = "redis-store")]
pub fn decode_redis_hash(pairs: RedisPairs, as_map: bool) -> Result<Option<Record>, StoreError> {
    crate::store::decode_redis_pairs(pairs, as_map)
}

/// The hash fields the Redis store writes for `record`.
#[cfg(feature = "redis-store")]
pub fn encode_redis_hash(record: &Record) -> Result<RedisPairs, StoreError> {
    crate::store::encode_redis_pairs(record)
}

/// Decodes a SQL row as the SQLite store does: `data` is the `data`
/// column's text (`None` for SQL `NULL`), the rest the timestamp columns in
/// unix seconds.
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub fn decode_sql_row(
    data: Option<&[u8]>,
    created: Option<i64>,
    accessed: Option<i64>,
    expires: Option<i64>,
) -> Result<Record, StoreError> {
    let value = data
        .map(serde_json::from_slice)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("data is not JSON: {e}")))?;
    crate::store::sql_record(value, created, accessed, expires)
}
