//! A user's sessions on Redis: one sorted set per owner, scored by expiry.
//!
//! The index of owner `o` is the sorted set `{prefix}:owner:{sha256(o)}`:
//! its members are the store keys of `o`'s sessions, each scored by the
//! session's expiry in unix milliseconds, and the set itself expires with
//! its last member (`PEXPIREAT` at the highest score). The owner is hashed
//! so that any string is a safe key name and user ids do not show in key
//! names.
//!
//! On Redis Cluster the index and a session's hash live in different slots,
//! so no script touches both: every script here touches one key. The
//! session's hash stays the truth. The save and cycle scripts answer the
//! owner the hash holds after the write; the store then files the key in
//! that owner's index with the new expiry as its score (the index script,
//! on the index key alone). A listing first drops every member whose score
//! is at or before now (`ZREMRANGEBYSCORE`), then reads each remaining
//! session's owner and timestamps from its hash and drops (`ZREM`) the
//! members whose hash is gone, belongs to another owner now, or has
//! expired: a stale entry never brings a session back, and never
//! outlives the session by more than the next listing or its own expiry.
//! A delete reads the owner as it deletes the hash and removes the member.

use redis::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{bytes, parse_timestamp, unix_millis, RedisStore, ACCESSED, CREATED, DATA, EXPIRES};
use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::{OwnedRecord, OWNER_KEY};

/// Files `ARGV[1]` (a store key) in the index at `KEYS[1]` with score
/// `ARGV[2]` (its expiry in unix milliseconds), removing `ARGV[3]` (the key
/// it was cycled from) first unless it is empty, and sets the index's
/// expiry to its highest score. One key: safe on Redis Cluster.
pub(super) const INDEX_SCRIPT: &str = r"
local index = KEYS[1]
if ARGV[3] ~= '' then redis.call('ZREM', index, ARGV[3]) end
redis.call('ZADD', index, ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', index, last[2]) end
return 1
";

/// Deletes the key at `KEYS[1]` and answers the owner its hash held (the
/// JSON of the owner field), or nil. Any key type is deleted, as `DEL`
/// would; only a hash is asked for its owner.
pub(super) const DELETE_SCRIPT: &str = r"
local key = KEYS[1]
local owner = false
if redis.call('TYPE', key).ok == 'hash' then
  owner = redis.call('HGET', key, ARGV[1])
end
redis.call('DEL', key)
return owner
";

/// The hash field the owner is kept in.
fn owner_field() -> String {
    format!("{DATA}{OWNER_KEY}")
}

/// The owner in the JSON of an owner field, if it is a JSON string.
fn owner_from_json(json: &[u8]) -> Option<String> {
    match serde_json::from_slice(json) {
        Ok(serde_json::Value::String(owner)) => Some(owner),
        _ => None,
    }
}

/// A script's answer with the owner split off: `{1, owner}` becomes `1`
/// and the owner (when it is a JSON string); any other answer is kept.
pub(super) fn split_owner(reply: Value) -> (Value, Option<String>) {
    match reply {
        Value::Array(items) if matches!(items.first(), Some(Value::Int(1))) && items.len() == 2 => {
            let owner = items
                .into_iter()
                .nth(1)
                .and_then(bytes)
                .and_then(|json| owner_from_json(&json));
            (Value::Int(1), owner)
        }
        other => (other, None),
    }
}

impl RedisStore {
    /// The Redis key of `owner`'s index: `{prefix}:owner:{sha256(owner)}`.
    fn index_key(&self, owner: &str) -> String {
        let digest = Sha256::new()
            .chain_update(b"carafe owner\0")
            .chain_update(owner.as_bytes())
            .finalize();
        format!("{}:owner:{}", self.prefix, hex::encode(digest))
    }

    /// Files `key` in `owner`'s index with `expires` as its score, taking
    /// `from` (the key a cycle moved the record from) out of it.
    pub(super) async fn index(
        &self,
        owner: &str,
        key: &StoreKey,
        from: Option<&StoreKey>,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        let _: Value = self
            .index_script
            .key(self.index_key(owner))
            .arg(key.as_str())
            .arg(unix_millis(expires))
            .arg(from.map_or("", StoreKey::as_str))
            .invoke_async(&mut conn)
            .await
            .map_err(|err| {
                tracing::warn!(store = "redis", error = %err, "a session was saved but could not be filed in its owner's index");
                StoreError::backend(err)
            })?;
        Ok(())
    }

    /// Deletes the hash of `key` and takes it out of its owner's index.
    pub(super) async fn delete_indexed(&self, key: &StoreKey) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        let owner: Value = self
            .delete_script
            .key(self.redis_key(key))
            .arg(owner_field())
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        if let Some(owner) = bytes(owner).and_then(|json| owner_from_json(&json)) {
            redis::cmd("ZREM")
                .arg(self.index_key(&owner))
                .arg(key.as_str())
                .query_async::<Value>(&mut conn)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(())
    }

    /// The live sessions of `owner` (see the module docs).
    pub(super) async fn owned(
        &self,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OwnedRecord>, StoreError> {
        let index = self.index_key(owner);
        let mut conn = self.connection()?;
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(unix_millis(now))
            .query_async::<Value>(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::backend)?;
        let field = owner_field();
        let mut found = Vec::with_capacity(members.len());
        for member in members {
            let entry = match StoreKey::parse(&member) {
                Some(key) => {
                    let reply: Vec<Option<Vec<u8>>> = match redis::cmd("HMGET")
                        .arg(self.redis_key(&key))
                        .arg(&field)
                        .arg(CREATED)
                        .arg(ACCESSED)
                        .arg(EXPIRES)
                        .query_async(&mut conn)
                        .await
                    {
                        Ok(reply) => reply,
                        // Not a hash: not a session of anyone's.
                        Err(err) if err.code() == Some("WRONGTYPE") => Vec::new(),
                        Err(err) => return Err(StoreError::backend(err)),
                    };
                    entry(key, owner, &reply)
                }
                None => None,
            };
            match entry {
                Some(entry) if entry.expires > now => found.push(entry),
                Some(_) => {}
                None => {
                    redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&member)
                        .query_async::<Value>(&mut conn)
                        .await
                        .map_err(StoreError::backend)?;
                }
            }
        }
        Ok(found)
    }
}

/// The listing entry for `key` from an `HMGET` of its owner, created,
/// accessed and expires fields, if the hash exists and belongs to `owner`.
fn entry(key: StoreKey, owner: &str, reply: &[Option<Vec<u8>>]) -> Option<OwnedRecord> {
    let [Some(stored), Some(created), Some(accessed), Some(expires)] = reply else {
        return None;
    };
    if owner_from_json(stored).as_deref() != Some(owner) {
        return None;
    }
    let time = |raw: &[u8]| std::str::from_utf8(raw).ok().and_then(parse_timestamp);
    Some(OwnedRecord {
        key,
        created: time(created)?,
        accessed: time(accessed)?,
        expires: time(expires)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_saved_answer_carries_an_owner() {
        let owned = Value::Array(vec![Value::Int(1), Value::BulkString(b"\"ada\"".to_vec())]);
        assert_eq!(split_owner(owned), (Value::Int(1), Some("ada".to_owned())));
        let not_a_string = Value::Array(vec![Value::Int(1), Value::BulkString(b"7".to_vec())]);
        assert_eq!(split_owner(not_a_string), (Value::Int(1), None));
        let too_large = Value::Array(vec![Value::Int(-3), Value::Int(9)]);
        assert_eq!(split_owner(too_large.clone()), (too_large, None));
        assert_eq!(split_owner(Value::Int(0)), (Value::Int(0), None));
    }

    #[test]
    fn entries_need_the_owner_and_every_timestamp() {
        let key = crate::SessionId::generate().store_key();
        let full = [
            Some(b"\"ada\"".to_vec()),
            Some(b"1700000000".to_vec()),
            Some(b"1700000001".to_vec()),
            Some(b"1700000002".to_vec()),
        ];
        let entry_of = |reply: &[Option<Vec<u8>>], owner: &str| entry(key.clone(), owner, reply);
        let listed = entry_of(&full, "ada").expect("listed");
        assert_eq!(listed.expires.unix_timestamp(), 1_700_000_002);
        assert!(entry_of(&full, "bob").is_none());
        for i in 0..4 {
            let mut broken = full.clone();
            broken[i] = None;
            assert!(entry_of(&broken, "ada").is_none(), "field {i} missing");
            broken[i] = Some(b"junk".to_vec());
            assert!(entry_of(&broken, "ada").is_none(), "field {i} junk");
        }
        assert!(entry_of(&[], "ada").is_none());
    }

    #[test]
    fn index_keys_hash_the_owner() {
        let store = RedisStore::new("redis://127.0.0.1:6379").expect("valid URL");
        let key = store.index_key("user:7 with spaces");
        assert!(key.starts_with("carafe:session:owner:"));
        assert!(!key.contains("user"));
        assert_ne!(key, store.index_key("user:8"));
    }
}
