//! An in-process store for development and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::{Change, Record, SaveKind, SaveOutcome};
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
/// ```
/// let store = carafe::MemoryStore::new();
/// assert!(store.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<StoreKey, Record>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
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
        Ok(self.lock().get(key).cloned())
    }

    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let mut records = self.lock();
        match change.kind {
            SaveKind::Create => {
                if records.contains_key(key) {
                    return Err(StoreError::Conflict);
                }
                records.insert(key.clone(), change.to_record());
                Ok(SaveOutcome::Saved)
            }
            SaveKind::Update => match records.get_mut(key) {
                Some(record) => {
                    change.apply(record);
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
        let Some(mut record) = records.remove(from) else {
            return Ok(SaveOutcome::Missing);
        };
        change.apply(&mut record);
        records.insert(to.clone(), record);
        Ok(SaveOutcome::Saved)
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

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run(|| async { MemoryStore::new() }).await;
    }
}
