//! An in-process store for development and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome};
use crate::store::SessionStore;

/// Sessions in a map in this process.
///
/// As Beaker warns of its memory backend: a session is valid only in the
/// process that made it and is lost when the process restarts. Use it for
/// development and tests. Expiry is enforced (by the layer on load, and by
/// [`delete_expired`](SessionStore::delete_expired), which a
/// [`Reaper`](crate::Reaper) calls), and overlapping saves merge per key.
/// Clones share one map.
///
/// [`list_owned`](SessionStore::list_owned) scans the map: there is no
/// index to keep in step, which suits a store meant for development.
///
/// Records are limited in size as in every server-side store (see
/// [`max_record_bytes`](MemoryStore::max_record_bytes)): the limit counts
/// the record as JSON, as the [`FileStore`](crate::FileStore) would write it.
///
/// ```
/// let store = carafe::MemoryStore::new();
/// assert!(store.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<StoreKey, Record>>>,
    max_record_bytes: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            records: Arc::default(),
            max_record_bytes: crate::store::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest record the store keeps, in bytes of the record as
    /// JSON (default [`DEFAULT_MAX_RECORD_BYTES`](crate::store::DEFAULT_MAX_RECORD_BYTES),
    /// 4 MiB). A save (or cycle) whose merged record would be larger fails
    /// with [`StoreError::TooLarge`] and changes nothing; a record already
    /// held that is larger (kept by a clone with a larger limit) loads as
    /// [`StoreError::Corrupt`], which the runtime treats as no session.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use carafe::store::{Change, SaveKind, SessionStore, StoreError};
    /// let store = carafe::MemoryStore::new().max_record_bytes(1024);
    /// assert_eq!(store.record_limit(), 1024);
    /// let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let mut set = carafe::store::Data::new();
    /// set.insert("big".into(), "x".repeat(2000).into());
    /// let change = Change { kind: SaveKind::Create, set, removed: vec![],
    ///                       created: t, accessed: t, expires: t };
    /// let key = carafe::SessionId::generate().store_key();
    /// assert!(matches!(store.save(&key, &change).await,
    ///                  Err(StoreError::TooLarge { limit: 1024, .. })));
    /// assert!(store.is_empty());
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// None here; the limit shows in the errors of
    /// [`save`](SessionStore::save) and [`cycle`](SessionStore::cycle).
    #[must_use]
    pub fn max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// The largest record the store keeps, in bytes of JSON.
    ///
    /// ```
    /// assert_eq!(carafe::MemoryStore::new().record_limit(), 4 * 1024 * 1024);
    /// ```
    #[must_use]
    pub fn record_limit(&self) -> usize {
        self.max_record_bytes
    }

    /// Refuses `record` if it is larger than the limit.
    fn check(&self, record: &Record) -> Result<(), StoreError> {
        let size = crate::store::json_len(record)?;
        if size > self.max_record_bytes {
            return Err(StoreError::TooLarge {
                size,
                limit: self.max_record_bytes,
            });
        }
        Ok(())
    }

    /// How many records the store holds, expired ones included.
    ///
    /// ```
    /// assert_eq!(carafe::MemoryStore::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no record.
    ///
    /// ```
    /// assert!(carafe::MemoryStore::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.lock().get(key).cloned() else {
            return Ok(None);
        };
        let size = crate::store::json_len(&record)?;
        if size > self.max_record_bytes {
            return Err(crate::store::oversized_record(
                self.name(),
                size,
                self.max_record_bytes,
            ));
        }
        Ok(Some(record))
    }

    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let mut records = self.lock();
        match change.kind {
            SaveKind::Create => {
                if records.contains_key(key) {
                    return Err(StoreError::Conflict);
                }
                let record = change.to_record();
                self.check(&record)?;
                records.insert(key.clone(), record);
                Ok(SaveOutcome::Saved)
            }
            SaveKind::Update => match records.get_mut(key) {
                Some(record) => {
                    let mut merged = record.clone();
                    change.apply(&mut merged);
                    self.check(&merged)?;
                    *record = merged;
                    Ok(SaveOutcome::Saved)
                }
                None => Ok(SaveOutcome::Missing),
            },
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let mut records = self.lock();
        if records.contains_key(to) {
            return Err(StoreError::Conflict);
        }
        let Some(mut record) = records.get(from).cloned() else {
            return Ok(SaveOutcome::Missing);
        };
        change.apply(&mut record);
        self.check(&record)?;
        records.remove(from);
        records.insert(to.clone(), record);
        Ok(SaveOutcome::Saved)
    }

    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        Ok(self
            .lock()
            .get_mut(key)
            .map(|record| record.take_prefixed(prefix))
            .unwrap_or_default())
    }

    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, record)| record.expires > now && record.owner() == Some(owner))
            .map(|(key, record)| OwnedRecord::new(key.clone(), record))
            .collect())
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|_, record| record.expires > now);
        Ok((before - records.len()) as u64)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "conformance")]
    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run(|| async { MemoryStore::new() }).await;
        let small = MemoryStore::new().max_record_bytes(8 * 1024);
        crate::store::conformance::oversized_save_is_refused(&small, 8 * 1024).await;
    }

    #[tokio::test]
    async fn an_oversized_record_loads_as_corrupt() {
        let big = MemoryStore::new();
        let small = big.clone().max_record_bytes(1024);
        let key = crate::id::SessionId::generate().store_key();
        let t = OffsetDateTime::UNIX_EPOCH;
        let mut set = crate::record::Data::new();
        set.insert("big".into(), serde_json::json!("x".repeat(2000)));
        let change = Change {
            kind: SaveKind::Create,
            set,
            removed: Vec::new(),
            created: t,
            accessed: t,
            expires: t,
        };
        assert_eq!(big.save(&key, &change).await.expect("save"), SaveOutcome::Saved);
        match small.load(&key).await {
            Err(StoreError::Corrupt(reason)) => {
                assert!(reason.contains("larger than the limit of 1024"), "{reason}");
            }
            other => panic!("an oversized record loaded as {other:?}"),
        }
        assert!(big.load(&key).await.expect("load").is_some());
    }
}
