//! Time, injectable so that every expiry rule can be tested without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

/// Where the session layer gets "now" from.
///
/// The layer uses [`SystemClock`] unless told otherwise; tests pass a
/// [`MockClock`] to [`SessionLayerBuilder::clock`](crate::SessionLayerBuilder::clock)
/// and move it forward by hand.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
///
/// ```
/// use carafe::{Clock, SystemClock};
/// assert!(SystemClock.now().year() >= 2024);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved. Clones share one time.
///
/// ```
/// use carafe::{Clock, MockClock};
/// use std::time::Duration;
/// use time::macros::datetime;
/// let clock = MockClock::new(datetime!(2030-01-01 0:00 UTC));
/// let seen_by_layer = clock.clone();
/// clock.advance(Duration::from_secs(5 * 60));
/// assert_eq!(seen_by_layer.now(), datetime!(2030-01-01 0:05 UTC));
/// ```
#[derive(Debug, Clone)]
pub struct MockClock(Arc<Mutex<OffsetDateTime>>);

impl MockClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: OffsetDateTime) -> Self {
        MockClock(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward (use [`set`](Self::set) to move it back).
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_add(Duration::try_from(by).unwrap_or(Duration::MAX));
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Default for MockClock {
    /// A clock at the current system time, standing still.
    fn default() -> Self {
        MockClock::new(OffsetDateTime::now_utc())
    }
}

impl Clock for MockClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `now` truncated to whole seconds: every stored timestamp has that
/// precision, in every store.
pub(crate) fn now_secs(clock: &dyn Clock) -> OffsetDateTime {
    let now = clock.now();
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}
