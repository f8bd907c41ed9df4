//! The layer's settings, fixed when it is built, and the expiry rules that
//! follow from them.

use cookie::SameSite;
use time::{Duration, OffsetDateTime};

use crate::record::{Data, Record};

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

/// The cookie's name when none is given and the `__Host-` prefix's rules
/// hold (`Secure`, `Path=/`, no `Domain`): the browser then refuses the
/// cookie from a sibling subdomain or over plain HTTP (ASVS 3.4.4).
pub(crate) const DEFAULT_COOKIE_NAME: &str = "__Host-carafe.sid";
/// The cookie's name when none is given and the prefix's rules do not
/// hold (a `Domain`, a narrower `Path`, or `secure(false)`).
pub(crate) const PLAIN_COOKIE_NAME: &str = "carafe.sid";

/// The cookie store's absolute lifetime when none is set: a copied cookie
/// cannot be revoked, so it must not be refreshable for ever.
pub(crate) const CLIENT_ABSOLUTE_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 60 * 60);

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
    /// `None` for client-side sessions: there is no store to fill.
    pub(crate) unconfirmed_timeout: Option<Duration>,
    pub(crate) store_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cookie_name: DEFAULT_COOKIE_NAME.into(),
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
            unconfirmed_timeout: Some(Duration::hours(1)),
            store_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// The session key a session's own expiry is kept under (see
/// [`SessionExpiry`]).
pub(crate) const EXPIRY_KEY: &str = "carafe.expiry";

/// One session's own expiry, replacing the layer's settings for that
/// session only (Django's `set_expiry`, tower-sessions' `set_expiry`):
/// "remember me" is a long idle timeout and a persistent cookie. A field
/// left `None` keeps the layer's setting. Kept in the session's data (under
/// the key `carafe.expiry`, in whole seconds), so it holds on every store,
/// the cookie store included, moves with the data on `cycle_id()`, and goes
/// with it on `invalidate()`, `clear()` and `delete()`.
///
/// ```
/// use std::time::Duration;
/// use carafe::{CookieExpiry, SessionExpiry};
///
/// let month = Duration::from_secs(30 * 24 * 60 * 60);
/// let remember = SessionExpiry::remember_for(month);
/// assert_eq!(remember.idle_timeout, Some(month));
/// assert_eq!(remember.cookie, Some(CookieExpiry::MaxAge(month)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionExpiry {
    /// How long the session may go unused (the layer's `idle_timeout`).
    pub idle_timeout: Option<std::time::Duration>,
    /// How long it may live at all, from its creation (the layer's
    /// `absolute_lifetime`).
    pub absolute_lifetime: Option<std::time::Duration>,
    /// When the browser forgets the cookie (the layer's `cookie_expires`).
    pub cookie: Option<CookieExpiry>,
}

impl SessionExpiry {
    /// "Remember me": the session lasts `duration` since its last use, and
    /// the browser keeps the cookie as long (`Max-Age`, renewed on writes).
    ///
    /// ```
    /// let e = carafe::SessionExpiry::remember_for(std::time::Duration::from_secs(86_400));
    /// assert!(e.absolute_lifetime.is_none());
    /// ```
    #[must_use]
    pub fn remember_for(duration: std::time::Duration) -> Self {
        SessionExpiry {
            idle_timeout: Some(duration),
            absolute_lifetime: None,
            cookie: Some(CookieExpiry::MaxAge(duration)),
        }
    }

    /// Whether every duration given is positive (zero would end the
    /// session at once).
    pub(crate) fn is_valid(&self) -> bool {
        let max_age = match self.cookie {
            Some(CookieExpiry::MaxAge(age)) => Some(age),
            _ => None,
        };
        [self.idle_timeout, self.absolute_lifetime, max_age]
            .into_iter()
            .flatten()
            .all(|d| !d.is_zero())
    }

    /// The stored form: `{"idle": s, "absolute": s, "cookie": "browser" |
    /// {"max_age": s} | {"at": unix}}`, each part only when set.
    pub(crate) fn to_value(self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        if let Some(idle) = self.idle_timeout {
            map.insert("idle".into(), idle.as_secs().into());
        }
        if let Some(life) = self.absolute_lifetime {
            map.insert("absolute".into(), life.as_secs().into());
        }
        if let Some(cookie) = self.cookie {
            let cookie = match cookie {
                CookieExpiry::BrowserSession => serde_json::Value::from("browser"),
                CookieExpiry::MaxAge(age) => serde_json::json!({ "max_age": age.as_secs() }),
                CookieExpiry::At(at) => serde_json::json!({ "at": at.unix_timestamp() }),
            };
            map.insert("cookie".into(), cookie);
        }
        serde_json::Value::Object(map)
    }

    /// The expiry from its stored form; `None` for anything malformed
    /// (the layer's settings then apply).
    pub(crate) fn from_value(value: &serde_json::Value) -> Option<Self> {
        let map = value.as_object()?;
        let secs = |key: &str| -> Option<Option<std::time::Duration>> {
            match map.get(key) {
                None => Some(None),
                Some(v) => v
                    .as_u64()
                    .filter(|&s| s > 0)
                    .map(|s| Some(std::time::Duration::from_secs(s))),
            }
        };
        let cookie = match map.get("cookie") {
            None => None,
            Some(serde_json::Value::String(s)) if s == "browser" => Some(CookieExpiry::BrowserSession),
            Some(serde_json::Value::Object(c)) => {
                if let Some(age) = c.get("max_age") {
                    let age = age.as_u64().filter(|&s| s > 0)?;
                    Some(CookieExpiry::MaxAge(std::time::Duration::from_secs(age)))
                } else {
                    let at = c.get("at")?.as_i64()?;
                    Some(CookieExpiry::At(OffsetDateTime::from_unix_timestamp(at).ok()?))
                }
            }
            Some(_) => return None,
        };
        Some(SessionExpiry {
            idle_timeout: secs("idle")?,
            absolute_lifetime: secs("absolute")?,
            cookie,
        })
    }
}

/// The lifetime rules for one session: the layer's settings with the
/// session's own expiry over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Option<Duration>,
    pub(crate) cookie: CookieExpiry,
}

impl Lifetime {
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
        matches!(self.cookie, CookieExpiry::MaxAge(_))
    }
}

impl Config {
    /// The lifetime rules for a session holding `data`.
    pub(crate) fn lifetime(&self, data: &Data) -> Lifetime {
        let own = data
            .get(EXPIRY_KEY)
            .and_then(SessionExpiry::from_value)
            .unwrap_or_default();
        Lifetime {
            idle_timeout: own.idle_timeout.map_or(self.idle_timeout, to_time),
            absolute_lifetime: own.absolute_lifetime.map(to_time).or(self.absolute_lifetime),
            cookie: own.cookie.unwrap_or(self.cookie_expires),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn record(created: OffsetDateTime, accessed: OffsetDateTime, expires: OffsetDateTime) -> Record {
        Record {
            data: Default::default(),
            created,
            accessed,
            expires,
        }
    }

    #[test]
    fn expiry_is_the_earliest_of_three_limits() {
        let t = datetime!(2030-01-01 0:00 UTC);
        let config = Config {
            idle_timeout: Duration::hours(1),
            absolute_lifetime: Some(Duration::hours(10)),
            ..Config::default()
        };
        let rules = config.lifetime(&Data::new());
        let far = t + Duration::days(100);
        assert!(!rules.is_expired(&record(t, t, far), t + Duration::minutes(59)));
        assert!(
            rules.is_expired(&record(t, t, far), t + Duration::hours(1)),
            "idle"
        );
        let active = t + Duration::hours(9) + Duration::minutes(30);
        assert!(
            rules.is_expired(&record(t, active, far), t + Duration::hours(10)),
            "absolute"
        );
        assert!(rules.is_expired(&record(t, t, t), t), "stored expiry");
        assert_eq!(rules.expires(t, t), t + Duration::hours(1));
        assert_eq!(
            rules.expires(t, t + Duration::hours(9) + Duration::minutes(30)),
            t + Duration::hours(10)
        );
    }

    #[test]
    fn a_sessions_own_expiry_overrides_the_layers_part_by_part() {
        let day = std::time::Duration::from_secs(86_400);
        let config = Config {
            idle_timeout: Duration::hours(1),
            absolute_lifetime: Some(Duration::hours(10)),
            ..Config::default()
        };
        let with = |own: SessionExpiry| {
            let mut data = Data::new();
            data.insert(EXPIRY_KEY.into(), own.to_value());
            config.lifetime(&data)
        };
        let layer = config.lifetime(&Data::new());
        assert_eq!(layer.cookie, CookieExpiry::BrowserSession);
        assert_eq!(with(SessionExpiry::default()), layer);
        let remember = with(SessionExpiry::remember_for(30 * day));
        assert_eq!(remember.idle_timeout, Duration::days(30));
        assert_eq!(remember.absolute_lifetime, Some(Duration::hours(10)), "kept");
        assert_eq!(remember.cookie, CookieExpiry::MaxAge(30 * day));
        assert!(remember.sliding_cookie() && !layer.sliding_cookie());
        let short = with(SessionExpiry {
            absolute_lifetime: Some(day / 24),
            ..SessionExpiry::default()
        });
        assert_eq!(short.absolute_lifetime, Some(Duration::hours(1)));
        assert_eq!(short.idle_timeout, Duration::hours(1), "the layer's");
    }

    #[test]
    fn the_stored_form_round_trips_and_junk_is_the_layers_settings() {
        let at = datetime!(2031-02-03 4:05 UTC);
        let secs = std::time::Duration::from_secs;
        for own in [
            SessionExpiry::default(),
            SessionExpiry::remember_for(secs(3600)),
            SessionExpiry {
                idle_timeout: None,
                absolute_lifetime: Some(secs(60)),
                cookie: Some(CookieExpiry::At(at)),
            },
            SessionExpiry {
                cookie: Some(CookieExpiry::BrowserSession),
                ..SessionExpiry::default()
            },
        ] {
            assert_eq!(SessionExpiry::from_value(&own.to_value()), Some(own));
        }
        for junk in [
            json!(42),
            json!("x"),
            json!({"idle": -1}),
            json!({"idle": 0}),
            json!({"idle": "1"}),
            json!({"cookie": "forever"}),
            json!({"cookie": {"max_age": 0}}),
            json!({"cookie": {"at": i64::MAX}}),
            json!({"cookie": {}}),
        ] {
            assert_eq!(SessionExpiry::from_value(&junk), None, "{junk}");
            let mut data = Data::new();
            data.insert(EXPIRY_KEY.into(), junk);
            assert_eq!(
                Config::default().lifetime(&data),
                Config::default().lifetime(&Data::new())
            );
        }
        assert!(!SessionExpiry::remember_for(secs(0)).is_valid());
        assert!(SessionExpiry::remember_for(secs(1)).is_valid());
    }
}
