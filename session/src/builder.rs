//! The layer's builder: every option checked before the application serves
//! anything.

use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;

use crate::backend::{Backend, IntoBackend};
use crate::clock::{Clock, SystemClock};
use crate::config::{to_time, Config, CookieExpiry, CLIENT_ABSOLUTE_LIFETIME, PLAIN_COOKIE_NAME};
use crate::error::ConfigError;
use crate::key::{Key, Keys};
use crate::layer::SessionLayer;
use crate::request::Shared;

/// Builds a [`SessionLayer`]. Get one from [`SessionLayer::builder`].
///
/// Every option has a safe default; only the secret is required. Each
/// option's Beaker name is given in its documentation and in the README.
///
/// ```
/// use carafe::{CookieExpiry, MemoryStore, SessionLayer};
/// use std::time::Duration;
///
/// const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// let layer = SessionLayer::builder(MemoryStore::new())
///     .secret(b"0123456789abcdef0123456789abcdef")
///     .cookie_name("app.sid")
///     .cookie_expires(CookieExpiry::MaxAge(7 * DAY))
///     .idle_timeout(Duration::from_secs(2 * 60 * 60))
///     .auto(true)
///     .build()?;
/// # Ok::<(), carafe::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use = "call .build() to get the layer"]
pub struct SessionLayerBuilder {
    backend: Backend,
    config: Config,
    secret: Option<Result<Key, ConfigError>>,
    old: Vec<Result<Key, ConfigError>>,
    clock: Arc<dyn Clock>,
    errors: Vec<ConfigError>,
    /// Whether the application named the cookie (otherwise `build` picks
    /// the name from the attributes).
    named: bool,
}

impl SessionLayerBuilder {
    pub(crate) fn new(backend: impl IntoBackend) -> Self {
        SessionLayerBuilder {
            backend: backend.into_backend(),
            config: Config::default(),
            secret: None,
            old: Vec::new(),
            clock: Arc::new(SystemClock),
            errors: Vec::new(),
            named: false,
        }
    }

    /// The secret cookies are signed with (Beaker's `secret`/`validate_key`):
    /// at least 32 bytes, best 64 random bytes. A shorter one makes
    /// [`build`](Self::build) fail.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let err = SessionLayer::builder(MemoryStore::new()).secret("short").build().unwrap_err();
    /// assert_eq!(err, carafe::ConfigError::SecretTooShort { len: 5, min: 32 });
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Key::from_secret(secret));
        self
    }

    /// The signing key, already derived (see [`Key::generate`] for a key
    /// that lives for one run of the program).
    ///
    /// ```
    /// # use carafe::{Key, MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).key(Key::generate()).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn key(mut self, key: Key) -> Self {
        self.secret = Some(Ok(key));
        self
    }

    /// A previous secret, still accepted when verifying cookies but never
    /// used to sign. Call once per old secret; remove it once every session
    /// signed with it has expired.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret(b"the new secret, at least 32 bytes long")
    ///     .old_secret(b"the old secret, at least 32 bytes long")
    ///     .build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn old_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.old.push(Key::from_secret(secret));
        self
    }

    /// The cookie's name (Beaker's `key`). Default `__Host-carafe.sid`
    /// when the `__Host-` prefix's rules hold (`Secure`, `Path=/`, no
    /// `Domain`, as by default), otherwise `carafe.sid`.
    ///
    /// A name with the `__Host-` prefix must have those attributes, and one
    /// with `__Secure-` must be `Secure` (browsers refuse such cookies
    /// otherwise): [`build`](Self::build) checks it. Prefixes are matched
    /// without regard to case, as browsers do.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let err = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).cookie_name("bad name;").build().unwrap_err();
    /// assert!(matches!(err, carafe::ConfigError::InvalidCookieName(_)));
    ///
    /// let err = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).cookie_name("__Host-sid").cookie_domain("example.com")
    ///     .build().unwrap_err();
    /// assert!(matches!(err, carafe::ConfigError::HostPrefix { .. }));
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if valid {
            self.config.cookie_name = name;
            self.named = true;
        } else {
            self.errors.push(ConfigError::InvalidCookieName(name));
        }
        self
    }

    /// The cookie's `Path` (Beaker's `cookie_path`). Default `/`.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).cookie_path("/app").build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        if path.starts_with('/') && attribute_ok(&path) {
            self.config.cookie_path = path;
        } else {
            self.errors.push(ConfigError::InvalidCookieAttribute {
                attribute: "path",
                value: path,
            });
        }
        self
    }

    /// The cookie's `Domain` (Beaker's `domain`). Default: none (the cookie
    /// goes back only to the host that set it).
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).cookie_domain("example.com").build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        if !domain.is_empty() && attribute_ok(&domain) {
            self.config.cookie_domain = Some(domain);
        } else {
            self.errors.push(ConfigError::InvalidCookieAttribute {
                attribute: "domain",
                value: domain,
            });
        }
        self
    }

    /// The cookie's `Secure` flag (Beaker's `secure`). Default **on**: the
    /// browser sends the cookie over HTTPS only (browsers treat
    /// `http://localhost` as secure too). Turn it off only for plain-HTTP
    /// development on another host.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).secure(false).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn secure(mut self, secure: bool) -> Self {
        self.config.secure = secure;
        self
    }

    /// The cookie's `HttpOnly` flag (Beaker's `httponly`). Default on:
    /// scripts cannot read the cookie.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).http_only(true).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.config.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` (Beaker's `samesite`). Default `Lax`.
    /// `None` requires `Secure`.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SameSite, SessionLayer};
    /// let err = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).same_site(SameSite::None).secure(false).build().unwrap_err();
    /// assert_eq!(err, carafe::ConfigError::SameSiteNoneWithoutSecure);
    /// ```
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.config.same_site = same_site;
        self
    }

    /// When the browser forgets the cookie (Beaker's `cookie_expires`).
    /// Default [`CookieExpiry::BrowserSession`].
    ///
    /// ```
    /// # use carafe::{CookieExpiry, MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32])
    ///     .cookie_expires(CookieExpiry::MaxAge(std::time::Duration::from_secs(30 * 24 * 60 * 60)))
    ///     .build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn cookie_expires(mut self, expires: CookieExpiry) -> Self {
        if let CookieExpiry::MaxAge(age) = expires {
            if age.is_zero() {
                self.errors.push(ConfigError::NonPositive {
                    option: "cookie_expires max age",
                });
            }
        }
        self.config.cookie_expires = expires;
        self
    }

    /// Save a modified session at the end of every request without a
    /// `save()` call (Beaker's `auto`). Default off. Typed sessions choose
    /// this per struct with `#[session(auto)]`.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).auto(true).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn auto(mut self, auto: bool) -> Self {
        self.config.auto = auto;
        self
    }

    /// How long a session may go unused before the server forgets it
    /// (Beaker's `timeout`). Default 14 days. Beaker has no default; carafe
    /// has one so that stores do not grow without bound.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).idle_timeout(std::time::Duration::from_secs(30 * 60)).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.errors.push(ConfigError::NonPositive {
                option: "idle_timeout",
            });
        }
        self.config.idle_timeout = to_time(timeout);
        self
    }

    /// How long a session may live at all, however active, counted from its
    /// creation. Default: no limit beyond the idle timeout for server-side
    /// stores; 30 days for the cookie store, whose cookies cannot be revoked
    /// (a copied cookie would otherwise stay valid as long as it is used).
    /// (Beaker has no such option.)
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).absolute_lifetime(std::time::Duration::from_secs(12 * 60 * 60)).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn absolute_lifetime(mut self, lifetime: Duration) -> Self {
        if lifetime.is_zero() {
            self.errors.push(ConfigError::NonPositive {
                option: "absolute_lifetime",
            });
        }
        self.config.absolute_lifetime = Some(to_time(lifetime));
        self
    }

    /// Whether reading a session refreshes its accessed time in the store
    /// (Beaker's `save_accessed_time`). Default on. When off, the accessed
    /// time is the time of the last write, and the idle timeout counts from
    /// it.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).save_accessed_time(false).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn save_accessed_time(mut self, save: bool) -> Self {
        self.config.save_accessed_time = save;
        self
    }

    /// The least time between two accessed-time refreshes of one session,
    /// so that an active session is not rewritten on every request. Default
    /// one minute. (Beaker rewrites on every access.)
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).accessed_time_interval(std::time::Duration::from_secs(30)).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn accessed_time_interval(mut self, interval: Duration) -> Self {
        self.config.accessed_refresh = to_time(interval);
        self
    }

    /// How long a new session lives until the browser sends its cookie back
    /// (default one hour; server-side stores only). A session is stored with this short expiry when
    /// it is created, and gets its full idle timeout on the first request
    /// that presents its cookie: a flood of cookieless requests that each
    /// create a session cannot fill the store for the idle timeout. (Beaker
    /// has no such option.)
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).unconfirmed_timeout(std::time::Duration::from_secs(10 * 60)).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn unconfirmed_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.errors.push(ConfigError::NonPositive {
                option: "unconfirmed_timeout",
            });
        }
        self.config.unconfirmed_timeout = Some(to_time(timeout));
        self
    }

    /// How long any one store call may take before the request gets a 500.
    /// Default 5 seconds.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new())
    ///     .secret([0u8; 32]).store_timeout(std::time::Duration::from_secs(2)).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.errors.push(ConfigError::NonPositive {
                option: "store_timeout",
            });
        }
        self.config.store_timeout = timeout;
        self
    }

    /// The clock every time rule reads. Default [`SystemClock`]; tests pass
    /// a [`MockClock`](crate::MockClock).
    ///
    /// ```
    /// # use carafe::{MemoryStore, MockClock, SessionLayer};
    /// let clock = MockClock::default();
    /// let layer = SessionLayer::builder(MemoryStore::new()).secret([0u8; 32]).clock(clock.clone()).build()?;
    /// # Ok::<(), carafe::ConfigError>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the options and builds the layer.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found: no secret, a secret shorter than 32
    /// bytes, an invalid cookie name, path or domain, `SameSite=None`
    /// without `Secure`, a `__Host-` or `__Secure-` cookie name without the
    /// attributes its prefix needs, or a duration that must be positive and
    /// is not.
    ///
    /// ```
    /// # use carafe::{MemoryStore, SessionLayer};
    /// let err = SessionLayer::builder(MemoryStore::new()).build().unwrap_err();
    /// assert_eq!(err, carafe::ConfigError::MissingSecret);
    /// ```
    pub fn build(mut self) -> Result<SessionLayer, ConfigError> {
        if self.backend.is_client() {
            // The session lives in the cookie: a flood fills no store.
            self.config.unconfirmed_timeout = None;
            // A copied cookie cannot be revoked; without an absolute
            // lifetime it could be refreshed for ever.
            if self.config.absolute_lifetime.is_none() {
                self.config.absolute_lifetime = Some(to_time(CLIENT_ABSOLUTE_LIFETIME));
            }
        }
        if let Some(err) = self.errors.into_iter().next() {
            return Err(err);
        }
        let current = self.secret.ok_or(ConfigError::MissingSecret)??;
        let old = self.old.into_iter().collect::<Result<Vec<_>, _>>()?;
        if self.config.same_site == SameSite::None && !self.config.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if !self.named && host_prefix_problem(&self.config).is_some() {
            self.config.cookie_name = PLAIN_COOKIE_NAME.into();
        }
        check_prefix(&self.config)?;
        let keys = Keys::new(current, old, &self.config.cookie_name);
        Ok(SessionLayer::from_shared(Shared {
            config: self.config,
            keys,
            backend: self.backend,
            clock: self.clock,
        }))
    }
}

/// Which of the `__Host-` prefix's rules the attributes break, if any.
fn host_prefix_problem(config: &Config) -> Option<&'static str> {
    if !config.secure {
        Some("the cookie is not Secure")
    } else if config.cookie_path != "/" {
        Some("the cookie's Path is not /")
    } else if config.cookie_domain.is_some() {
        Some("the cookie has a Domain")
    } else {
        None
    }
}

/// The `__Host-` and `__Secure-` prefixes' rules, for the cookie's name.
fn check_prefix(config: &Config) -> Result<(), ConfigError> {
    let name = &config.cookie_name;
    let has = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    if has("__Host-") {
        if let Some(problem) = host_prefix_problem(config) {
            return Err(ConfigError::HostPrefix {
                name: name.clone(),
                problem,
            });
        }
    } else if has("__Secure-") && !config.secure {
        return Err(ConfigError::SecurePrefix(name.clone()));
    }
    Ok(())
}

fn attribute_ok(value: &str) -> bool {
    value.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// `(name, secure, path, domain)` → the name `build` settles on, or the
    /// error it gives.
    #[test]
    fn cookie_prefix_rules() {
        type Case = (
            Option<&'static str>,
            bool,
            &'static str,
            Option<&'static str>,
            Result<&'static str, &'static str>,
        );
        let cases: &[Case] = &[
            // the default name follows the attributes
            (None, true, "/", None, Ok("__Host-carafe.sid")),
            (None, false, "/", None, Ok("carafe.sid")),
            (None, true, "/app", None, Ok("carafe.sid")),
            (None, true, "/", Some("example.com"), Ok("carafe.sid")),
            // a chosen name is kept, or refused if its prefix's rules fail
            (Some("sid"), false, "/app", Some("example.com"), Ok("sid")),
            (Some("__Host-sid"), true, "/", None, Ok("__Host-sid")),
            (Some("__Host-sid"), false, "/", None, Err("HostPrefix")),
            (Some("__Host-sid"), true, "/app", None, Err("HostPrefix")),
            (
                Some("__Host-sid"),
                true,
                "/",
                Some("example.com"),
                Err("HostPrefix"),
            ),
            (Some("__host-sid"), false, "/", None, Err("HostPrefix")),
            (
                Some("__HOST-sid"),
                true,
                "/",
                Some("a.example"),
                Err("HostPrefix"),
            ),
            (
                Some("__Secure-sid"),
                true,
                "/app",
                Some("example.com"),
                Ok("__Secure-sid"),
            ),
            (Some("__Secure-sid"), false, "/", None, Err("SecurePrefix")),
            (Some("__secure-sid"), false, "/", None, Err("SecurePrefix")),
            // not a prefix: no rule
            (Some("_Host-sid"), false, "/", None, Ok("_Host-sid")),
            (Some("__Host"), false, "/", None, Ok("__Host")),
        ];
        for &(name, secure, path, domain, expected) in cases {
            let mut b = SessionLayerBuilder::new(MemoryStore::new())
                .secret([9u8; 32])
                .secure(secure)
                .cookie_path(path);
            if let Some(name) = name {
                b = b.cookie_name(name);
            }
            if let Some(domain) = domain {
                b = b.cookie_domain(domain);
            }
            let got = match b.build() {
                Ok(layer) => Ok(layer.cookie_name().to_owned()),
                Err(ConfigError::HostPrefix { .. }) => Err("HostPrefix"),
                Err(ConfigError::SecurePrefix(_)) => Err("SecurePrefix"),
                Err(other) => panic!("{name:?}: unexpected {other}"),
            };
            let case = (name, secure, path, domain);
            assert_eq!(got.as_deref().map_err(|e| *e), expected, "{case:?}");
        }
    }

    #[cfg(feature = "cookie-store")]
    #[test]
    fn the_cookie_store_gets_a_default_absolute_lifetime() {
        let layer = SessionLayerBuilder::new(crate::CookieStore::new())
            .secret([9u8; 32])
            .build()
            .unwrap();
        assert_eq!(
            layer.shared().config.absolute_lifetime,
            Some(to_time(CLIENT_ABSOLUTE_LIFETIME))
        );
        let chosen = SessionLayerBuilder::new(crate::CookieStore::new())
            .secret([9u8; 32])
            .absolute_lifetime(std::time::Duration::from_secs(3600))
            .build()
            .unwrap();
        assert_eq!(
            chosen.shared().config.absolute_lifetime,
            Some(time::Duration::hours(1))
        );
        let server = SessionLayerBuilder::new(MemoryStore::new())
            .secret([9u8; 32])
            .build()
            .unwrap();
        assert_eq!(server.shared().config.absolute_lifetime, None);
    }
}
