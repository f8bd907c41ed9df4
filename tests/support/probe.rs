//! [`Probe`]: a store wrapper that counts calls and can be told to fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use carafe::store::{Change, Data, Record, SaveOutcome, StoreKey};
use carafe::{SessionStore, StoreError};
use time::OffsetDateTime;

/// A store wrapper that counts calls and can be told to fail.
#[derive(Debug, Clone)]
pub struct Probe<S> {
    pub inner: S,
    pub loads: Arc<AtomicUsize>,
    pub saves: Arc<AtomicUsize>,
    pub deletes: Arc<AtomicUsize>,
    pub cycles: Arc<AtomicUsize>,
    pub takes: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
    pub last_change: Arc<std::sync::Mutex<Option<Change>>>,
}

impl<S: SessionStore> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            loads: Arc::default(),
            saves: Arc::default(),
            deletes: Arc::default(),
            cycles: Arc::default(),
            takes: Arc::default(),
            failing: Arc::default(),
            last_change: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
            + self.saves.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
            + self.cycles.load(Ordering::SeqCst)
            + self.takes.load(Ordering::SeqCst)
    }

    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    pub fn last_change(&self) -> Option<Change> {
        self.last_change.lock().unwrap().clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::backend(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "probe: store down",
            )))
        } else {
            Ok(())
        }
    }
}

#[carafe::store::async_trait]
impl<S: SessionStore> SessionStore for Probe<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.load(key).await
    }
    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        *self.last_change.lock().unwrap() = Some(change.clone());
        self.inner.save(key, change).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.delete(key).await
    }
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        self.cycles.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        *self.last_change.lock().unwrap() = Some(change.clone());
        self.inner.cycle(from, to, change).await
    }
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        self.takes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.take_prefixed(key, prefix).await
    }
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_expired(now).await
    }
    async fn list_owned(
        &self,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<carafe::store::OwnedRecord>, StoreError> {
        self.check()?;
        self.inner.list_owned(owner, now).await
    }
    fn name(&self) -> &'static str {
        "probe"
    }
}
