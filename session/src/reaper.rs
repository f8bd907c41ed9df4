//! A background task that removes expired sessions from a store.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clock::{Clock, SystemClock};
use crate::store::SessionStore;

/// The longest interval (a year); longer ones are shortened to it.
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Calls [`SessionStore::delete_expired`] every interval on a tokio task.
///
/// The layer never deletes sessions that nobody comes back for; stores that
/// do not expire records by themselves (memory, file, SQL) need a reaper, as
/// Beaker's file and database backends need a cron job.
///
/// The first run is one interval after the spawn, and each next run one
/// interval after the previous one finished, so a slow run (a large
/// directory, a busy database) is never followed by catch-up runs. A run
/// that fails (or panics) is logged with `tracing::warn!`, naming the store,
/// and the reaper carries on.
///
/// [`Reaper::shutdown`] stops the task and waits for a run in progress;
/// dropping the `Reaper` stops it too (after a run in progress), without
/// waiting.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use carafe::{MemoryStore, Reaper, SessionStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let reaper = Reaper::spawn(store.clone(), Duration::from_secs(600));
/// // ... build the layer with `store`, serve ...
/// reaper.shutdown().await;
/// # }
/// ```
#[must_use = "dropping a Reaper stops it"]
pub struct Reaper {
    /// Dropping or sending stops the task.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    store: &'static str,
    interval: Duration,
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("store", &self.store)
            .field("interval", &self.interval)
            .field("running", &self.task.as_ref().is_some_and(|t| !t.is_finished()))
            .finish()
    }
}

impl Reaper {
    /// Starts reaping `store` every `interval`, using the system clock for
    /// "now". A zero interval is taken as one millisecond, one over a year
    /// as a year.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// let store = Arc::new(carafe::FileStore::new(tmp.path())?);
    /// let reaper = carafe::Reaper::spawn(store, Duration::from_secs(15 * 60));
    /// # reaper.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(store: Arc<dyn SessionStore>, interval: Duration) -> Reaper {
        Reaper::spawn_with_clock(store, Arc::new(SystemClock), interval)
    }

    /// Starts reaping `store` every `interval`, asking `clock` for "now":
    /// give it the clock the layer uses (a [`MockClock`](crate::MockClock)
    /// in tests). A zero interval is taken as one millisecond, one over a
    /// year as a year.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use carafe::{MemoryStore, MockClock, Reaper};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let clock = MockClock::default();
    /// let store = Arc::new(MemoryStore::new());
    /// let reaper = Reaper::spawn_with_clock(store, Arc::new(clock.clone()), Duration::from_secs(60));
    /// clock.advance(std::time::Duration::from_secs(30 * 24 * 60 * 60)); // the reaper's next run sees this time
    /// reaper.shutdown().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn_with_clock(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Reaper {
        let interval = interval.clamp(Duration::from_millis(1), MAX_INTERVAL);
        let name = store.name();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(store, clock, interval, stopped));
        Reaper {
            stop: Some(stop),
            task: Some(task),
            store: name,
            interval,
        }
    }

    /// Stops the reaper, waiting for a run in progress to finish.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let reaper = carafe::Reaper::spawn(Arc::new(carafe::MemoryStore::new()), Duration::from_secs(60));
    /// reaper.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may be gone already (its runtime shut down); then
            // there is nothing to stop.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                if err.is_panic() {
                    tracing::warn!(store = self.store, "session reaper task panicked");
                }
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which stops after a run in
        // progress. The task is not aborted mid-run.
        self.stop.take();
    }
}

/// Whether the loop should stop or run.
enum Wake {
    Stop,
    Tick,
}

async fn run(
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    period: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // A stop request or a dropped `Reaper` (the sender is gone) both
        // complete the receiver; a stop wins over a due tick.
        let wake = poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            ticks.poll_tick(cx).map(|_| Wake::Tick)
        })
        .await;
        if let Wake::Stop = wake {
            break;
        }
        let now = clock.now();
        // Its own task, so that a panicking store does not end the loop.
        let reap = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.delete_expired(now).await })
        };
        match reap.await {
            Ok(Ok(removed)) => {
                tracing::debug!(store = store.name(), removed, "reaped expired sessions");
            }
            Ok(Err(err)) => {
                tracing::warn!(store = store.name(), error = %err, "reaping expired sessions failed");
            }
            Err(err) => {
                tracing::warn!(store = store.name(), error = %err, "reaping expired sessions panicked");
            }
        }
        // The next run is one interval from now, however long this one took.
        ticks.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::clock::MockClock;
    use crate::error::StoreError;
    use crate::id::{SessionId, StoreKey};
    use crate::record::{Change, Record, SaveKind, SaveOutcome};
    use crate::store::MemoryStore;

    const MINUTE: Duration = Duration::from_secs(60);

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2030-01-01 0:00 UTC)
    }

    async fn put(store: &dyn SessionStore, expires: OffsetDateTime) -> StoreKey {
        let key = SessionId::generate().store_key();
        let mut set = crate::record::Data::new();
        set.insert("user".into(), json!("ada"));
        let change = Change {
            kind: SaveKind::Create,
            set,
            removed: Vec::new(),
            created: t0(),
            accessed: t0(),
            expires,
        };
        assert_eq!(
            store.save(&key, &change).await.expect("create"),
            SaveOutcome::Saved
        );
        key
    }

    /// A store whose `delete_expired` fails (or panics) on chosen calls and
    /// counts its calls; `delay` makes each run take that long.
    #[derive(Debug, Default)]
    struct Flaky {
        calls: AtomicUsize,
        finished: AtomicUsize,
        fail: bool,
        panic_first: bool,
        delay: Option<Duration>,
    }

    #[async_trait]
    impl SessionStore for Flaky {
        async fn load(&self, _: &StoreKey) -> Result<Option<Record>, StoreError> {
            Ok(None)
        }
        async fn save(&self, _: &StoreKey, _: &Change) -> Result<SaveOutcome, StoreError> {
            Ok(SaveOutcome::Missing)
        }
        async fn delete(&self, _: &StoreKey) -> Result<(), StoreError> {
            Ok(())
        }
        async fn cycle(&self, _: &StoreKey, _: &StoreKey, _: &Change) -> Result<SaveOutcome, StoreError> {
            Ok(SaveOutcome::Missing)
        }
        async fn take_prefixed(&self, _: &StoreKey, _: &str) -> Result<crate::record::Data, StoreError> {
            Ok(crate::record::Data::new())
        }
        async fn delete_expired(&self, _: OffsetDateTime) -> Result<u64, StoreError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
            assert!(!(self.panic_first && call == 0), "store panics on its first run");
            if self.fail {
                return Err(StoreError::Timeout(Duration::from_secs(1)));
            }
            Ok(0)
        }
        fn name(&self) -> &'static str {
            "flaky"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn removes_expired_records_after_each_interval() {
        let clock = MockClock::new(t0());
        let store = Arc::new(MemoryStore::new());
        let soon = put(&*store, t0() + time::Duration::minutes(5)).await;
        let later = put(&*store, t0() + time::Duration::hours(1)).await;
        let reaper = Reaper::spawn_with_clock(store.clone(), Arc::new(clock.clone()), MINUTE);

        clock.advance(std::time::Duration::from_secs(10 * 60));
        tokio::time::sleep(MINUTE / 2).await;
        assert!(
            store.load(&soon).await.expect("load").is_some(),
            "no run before one interval"
        );
        tokio::time::sleep(MINUTE).await;
        assert!(
            store.load(&soon).await.expect("load").is_none(),
            "removed by the first run"
        );
        assert!(
            store.load(&later).await.expect("load").is_some(),
            "not expired yet"
        );

        clock.advance(std::time::Duration::from_secs(60 * 60));
        tokio::time::sleep(MINUTE).await;
        assert!(
            store.load(&later).await.expect("load").is_none(),
            "removed by a later run"
        );
        assert!(store.is_empty());

        tokio::time::timeout(Duration::from_millis(10), reaper.shutdown())
            .await
            .expect("shutdown returns promptly");
    }

    #[tokio::test(start_paused = true)]
    async fn spawn_uses_the_system_clock() {
        let store = Arc::new(MemoryStore::new());
        let now = OffsetDateTime::now_utc();
        let past = put(&*store, now - time::Duration::minutes(1)).await;
        let future = put(&*store, now + time::Duration::days(1)).await;
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        tokio::time::sleep(MINUTE + Duration::from_secs(1)).await;
        assert!(store.load(&past).await.expect("load").is_none());
        assert!(store.load(&future).await.expect("load").is_some());
        reaper.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn runs_once_per_interval_and_errors_do_not_stop_it() {
        let store = Arc::new(Flaky {
            fail: true,
            ..Flaky::default()
        });
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        tokio::time::sleep(MINUTE * 3 + MINUTE / 2).await;
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            3,
            "one run per interval despite errors"
        );
        tokio::time::timeout(Duration::from_millis(10), reaper.shutdown())
            .await
            .expect("shutdown returns promptly");
        tokio::time::sleep(MINUTE * 5).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 3, "no run after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_store_does_not_stop_it() {
        let store = Arc::new(Flaky {
            panic_first: true,
            ..Flaky::default()
        });
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        tokio::time::sleep(MINUTE * 2 + MINUTE / 2).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        reaper.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_run_in_progress() {
        let store = Arc::new(Flaky {
            delay: Some(MINUTE * 10),
            ..Flaky::default()
        });
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        tokio::time::sleep(MINUTE + Duration::from_secs(1)).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1, "a run has started");
        assert_eq!(store.finished.load(Ordering::SeqCst), 0, "and is in progress");
        let started = Instant::now();
        reaper.shutdown().await;
        assert_eq!(
            store.finished.load(Ordering::SeqCst),
            1,
            "shutdown waited for the run"
        );
        assert!(started.elapsed() <= MINUTE * 10);
        tokio::time::sleep(MINUTE * 30).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1, "no run after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_delays_the_next_without_catching_up() {
        let store = Arc::new(Flaky {
            delay: Some(MINUTE * 3 + MINUTE / 2),
            ..Flaky::default()
        });
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        // Run 1 starts at 1 min and ends at 4.5 min; the next starts one
        // interval later, at 5.5 min, not at once.
        tokio::time::sleep(MINUTE * 5).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(MINUTE).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        drop(reaper);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_stops_it() {
        let store = Arc::new(Flaky::default());
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        tokio::time::sleep(MINUTE + MINUTE / 2).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        drop(reaper);
        tokio::time::sleep(MINUTE * 10).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1, "no run after drop");
        // Everything the task held is released.
        assert_eq!(Arc::strong_count(&store), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_before_the_first_run_and_zero_interval() {
        let store = Arc::new(Flaky::default());
        let reaper = Reaper::spawn(store.clone(), Duration::ZERO);
        assert!(format!("{reaper:?}").contains("flaky"));
        tokio::time::sleep(Duration::from_millis(5) + Duration::from_micros(500)).await;
        let calls = store.calls.load(Ordering::SeqCst);
        assert!(
            (4..=5).contains(&calls),
            "a zero interval runs every millisecond: {calls}"
        );
        reaper.shutdown().await;

        let store = Arc::new(Flaky::default());
        let reaper = Reaper::spawn(store.clone(), MINUTE);
        reaper.shutdown().await;
        tokio::time::sleep(MINUTE * 3).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reaps_a_file_store() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let clock = MockClock::new(t0());
        let store = Arc::new(crate::store::FileStore::new(tmp.path()).expect("new"));
        let key = put(&*store, t0() + time::Duration::minutes(5)).await;
        let reaper = Reaper::spawn_with_clock(store.clone(), Arc::new(clock.clone()), MINUTE);
        clock.advance(std::time::Duration::from_secs(5 * 60));
        tokio::time::sleep(MINUTE + Duration::from_secs(1)).await;
        reaper.shutdown().await;
        assert!(store.load(&key).await.expect("load").is_none());
    }
}
