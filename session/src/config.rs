//! The layer's settings, fixed when it is built, and the expiry rules that
//! follow from them.

use cookie::SameSite;
use time::{Duration, OffsetDateTime};

use crate::record::Record;

/// When the browser should forget the session cookie (Beaker's
/// `cookie_expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieExpiry {
    /// No `Max-Age`/`Expires`: the browser drops the cookie when it closes
    /// (Beaker's `cookie_expires = True`, the default).
    #[default]
    BrowserSession,
    /// `Max-Age`, refreshed whenever the session is written or its accessed
    /// time is refreshed (a sliding window).
    MaxAge(std::time::Duration),
    /// A fixed `Expires` time.
    At(OffsetDateTime),
}

/// A `std` duration as `time`'s, saturating at the longest it holds
/// (the public API takes `std::time::Duration` throughout).
pub(crate) fn to_time(duration: std::time::Duration) -> Duration {
    Duration::try_from(duration).unwrap_or(Duration::MAX)
}

/// Settings fixed when the layer is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cookie_name: String,
    pub(crate) cookie_path: String,
    pub(crate) cookie_domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) cookie_expires: CookieExpiry,
    pub(crate) auto: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Option<Duration>,
    pub(crate) save_accessed_time: bool,
    pub(crate) accessed_refresh: Duration,
    pub(crate) store_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cookie_name: "carafe.sid".into(),
            cookie_path: "/".into(),
            cookie_domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            cookie_expires: CookieExpiry::BrowserSession,
            auto: false,
            idle_timeout: Duration::days(14),
            absolute_lifetime: None,
            save_accessed_time: true,
            accessed_refresh: Duration::minutes(1),
            store_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Config {
    /// When a session last accessed at `accessed` and created at `created`
    /// expires on the server.
    pub(crate) fn expires(&self, created: OffsetDateTime, accessed: OffsetDateTime) -> OffsetDateTime {
        let idle = accessed.saturating_add(self.idle_timeout);
        match self.absolute_lifetime {
            Some(life) => idle.min(created.saturating_add(life)),
            None => idle,
        }
    }

    /// Whether `record` is past its stored expiry, its idle timeout or its
    /// absolute lifetime at `now`.
    pub(crate) fn is_expired(&self, record: &Record, now: OffsetDateTime) -> bool {
        record.expires <= now
            || record.accessed.saturating_add(self.idle_timeout) <= now
            || self
                .absolute_lifetime
                .is_some_and(|life| record.created.saturating_add(life) <= now)
    }

    /// Whether a written cookie carries an expiry that a write refreshes.
    pub(crate) fn sliding_cookie(&self) -> bool {
        matches!(self.cookie_expires, CookieExpiry::MaxAge(_))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn expiry_is_the_earliest_of_three_limits() {
        let t = datetime!(2030-01-01 0:00 UTC);
        let config = Config {
            idle_timeout: Duration::hours(1),
            absolute_lifetime: Some(Duration::hours(10)),
            ..Config::default()
        };
        let record = |created, accessed, expires| Record {
            data: Default::default(),
            created,
            accessed,
            expires,
        };
        let far = t + Duration::days(100);
        assert!(!config.is_expired(&record(t, t, far), t + Duration::minutes(59)));
        assert!(
            config.is_expired(&record(t, t, far), t + Duration::hours(1)),
            "idle"
        );
        let active = t + Duration::hours(9) + Duration::minutes(30);
        assert!(
            config.is_expired(&record(t, active, far), t + Duration::hours(10)),
            "absolute"
        );
        assert!(config.is_expired(&record(t, t, t), t), "stored expiry");
        assert_eq!(config.expires(t, t), t + Duration::hours(1));
        assert_eq!(
            config.expires(t, t + Duration::hours(9) + Duration::minutes(30)),
            t + Duration::hours(10)
        );
    }
}
