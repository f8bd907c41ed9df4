//! The client-side store: the whole session, encrypted, in the cookie. The
//! documentation is on [`CookieStore`] (this module is private).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backend::{sealed, Backend, ClientCodec, IntoBackend};
use crate::config::{Config, DEFAULT_COOKIE_NAME};
use crate::error::StoreError;
use crate::id::SessionId;
use crate::key::{fill_random, Key, Keys};
use crate::record::{Data, Record};
use crate::wire::session_cookie;

/// The format version, the first byte of every cookie. Version 2 binds the
/// cookie's name into the associated data; version 1 cookies (which did
/// not) are refused, so they start fresh sessions.
const VERSION: u8 = 2;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// What the associated data binds besides the version byte.
const PURPOSE: &[u8] = b"carafe client-side session";
/// The smallest decoded cookie: version, nonce and tag around nothing.
const MIN_RAW_LEN: usize = 1 + NONCE_LEN + TAG_LEN;
/// The secret [`CookieStore::__fuzz_decode`] decrypts with.
const FUZZ_SECRET: &[u8] = b"carafe fuzz secret: not for production use";

/// Client-side sessions: the whole session, encrypted, in the cookie
/// (Beaker's `session.type = cookie`). Feature `cookie-store`.
///
/// Pass it to [`SessionLayer::builder`](crate::SessionLayer::builder) like a
/// server-side store; the layer's secret (and old secrets) provide the
/// encryption keys. The server keeps nothing. At the end of a request that
/// changed the session, the layer serializes the session's id, data and
/// timestamps, encrypts them, and sends the result as the cookie; the next
/// request decrypts it again. The typed and untyped session APIs work
/// unchanged, and so do the save rules: only a written session gets a new
/// cookie (a write, an id change, or a due accessed-time refresh with
/// `save_accessed_time`).
///
/// ```
/// use axum::{routing::get, Router};
/// use carafe::{CookieStore, Session, SessionLayer};
///
/// async fn index(session: Session) -> String {
///     let count = session.get::<u32>("count").ok().flatten().unwrap_or(0) + 1;
///     session.insert("count", count).ok();
///     format!("count: {count}")
/// }
///
/// let layer = SessionLayer::builder(CookieStore::new())
///     .secret(b"0123456789abcdef0123456789abcdef")
///     .auto(true)
///     .build()?;
/// let app: Router = Router::new().route("/", get(index)).layer(layer);
/// # Ok::<(), carafe::ConfigError>(())
/// ```
///
/// # Encryption
///
/// AES-256-GCM under the encryption key that HKDF-SHA256 derives from the
/// layer's current secret (a different key than the one that signs
/// server-side session cookies: the same raw bytes are never used for both).
/// Every cookie gets a fresh random 96-bit nonce from the operating system's
/// CSPRNG. The cookie value is
///
/// ```text
/// base64url-no-pad( version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes) )
/// ```
///
/// with the version byte and the purpose (`"carafe client-side session"`)
/// bound as associated data, and the plaintext is the compact JSON
/// `{"i":"<id>","c":<created>,"a":<accessed>,"e":<expires>,"d":<data>}`
/// (timestamps in Unix seconds). A cookie is decrypted with the current key
/// first, then with each old key (`old_secret`), so rotating the secret logs
/// nobody out.
///
/// With random 96-bit nonces, AES-GCM stays safe for about 2³² (four billion)
/// cookies per key: rotate the secret long before one key has written that
/// many.
///
/// # Size
///
/// Browsers drop cookies larger than about 4096 bytes. RFC 6265 (§6.1) asks
/// them to accept at least 4096 bytes counting the name, the value and the
/// attributes together; Chrome and Firefox count only name and value. The
/// store counts the most: [`max_cookie_bytes`](Self::max_cookie_bytes)
/// (default 4096) bounds the whole `Set-Cookie` header value the layer would
/// send (`name=value` and every attribute: `Path`, `Domain`, `Max-Age`,
/// `Expires`, `Secure`, `HttpOnly`, `SameSite`; not the `Set-Cookie: ` header
/// name). A session that would not fit is refused when it is saved: the save
/// fails with [`StoreError::TooLarge`](crate::StoreError::TooLarge), the
/// response becomes a 500 and a `tracing` error names the size and the limit
/// (`session too large: 4187 bytes, the limit is 4096`). Nothing is dropped
/// silently, and the cookie the browser already has is neither replaced nor
/// removed. A handler that calls [`Session::persist`](crate::Session::persist)
/// gets the error itself and may recover (remove data, answer 413).
///
/// The overhead per cookie: [`FIXED_OVERHEAD`](Self::FIXED_OVERHEAD) (119)
/// bytes are added to the data's compact JSON (version, nonce, tag, id,
/// timestamps and the envelope's field names), and base64 turns every 3 bytes
/// into 4. A
/// session whose data is `D` bytes of JSON has a cookie value of
/// `⌈4 (D + 119) / 3⌉` bytes: 162 for an empty session. With the default
/// cookie name and attributes (`__Host-carafe.sid=`, `Path=/`, `HttpOnly`,
/// `SameSite=Lax`, `Secure`: 58 bytes besides the value), data of up to 2909
/// bytes of JSON fits in 4096.
///
/// Incoming cookie values longer than the limit are not even decoded.
///
/// # What a client-side store cannot do
///
/// * **Revoke one session before it expires.** The server keeps no list of
///   live sessions, so [`Session::delete`](crate::Session::delete) (logout)
///   only tells the browser to drop its cookie; a copy of the cookie made
///   before stays valid until its idle timeout or absolute lifetime runs out.
///   Keep both short. So that a copied cookie cannot be refreshed for ever,
///   the absolute lifetime defaults to **30 days** with this store (set
///   `absolute_lifetime` to change it); it is counted from the session's
///   creation, which `cycle_id()` keeps.
/// * **List or revoke a user's sessions.** Nothing server-side knows them:
///   [`Session::owner_sessions`](crate::Session::owner_sessions),
///   [`revoke`](crate::Session::revoke),
///   [`revoke_other_sessions`](crate::Session::revoke_other_sessions) and
///   the layer's [`owner_sessions`](crate::SessionLayer::owner_sessions) and
///   [`revoke_owner`](crate::SessionLayer::revoke_owner) answer
///   [`StoreError::Unsupported`](crate::StoreError::Unsupported) with this
///   store. The one lever is the secret: **rotating the secret and
///   dropping the old one logs everyone out at once** (a global logout).
/// * **Hide the session's size.** The data is encrypted, but the cookie's
///   length tells anyone who sees it roughly how much data the session holds.
/// * **Merge overlapping requests.** Each response carries the whole session;
///   when two requests with the same cookie overlap, the browser keeps the
///   cookie of the response it receives last, and the other request's changes
///   are lost (server-side stores merge changes to different keys).
///
/// Expiry, on the other hand, does not depend on the browser: the idle and
/// absolute expiry are checked against the timestamps inside the decrypted
/// cookie, so an old cookie kept (or copied) past its expiry is no session.
/// Old keys stay needed as long as a cookie encrypted with them may still be
/// unexpired: sessions are re-encrypted with the current key only when they
/// are written, so keep an `old_secret` for at least the idle timeout.
///
/// A cookie that is not base64, is truncated, too short to hold a nonce and
/// a tag, has another version, fails authentication under every key, or
/// decrypts to anything but the expected JSON is no session: the request
/// gets a fresh session with a fresh id, never an error.
///
/// Rotation and limits together:
///
/// ```
/// use carafe::{CookieStore, SessionLayer};
///
/// let layer = SessionLayer::builder(CookieStore::new().max_cookie_bytes(4000))
///     .secret(b"the current secret, at least 32 bytes")
///     .old_secret(b"the previous secret, at least 32 bytes")
///     .idle_timeout(std::time::Duration::from_secs(2 * 60 * 60))
///     .build()?;
/// # Ok::<(), carafe::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieStore {
    max_cookie_bytes: usize,
}

impl Default for CookieStore {
    fn default() -> Self {
        CookieStore {
            max_cookie_bytes: Self::DEFAULT_MAX_COOKIE_BYTES,
        }
    }
}

impl CookieStore {
    /// The default [`max_cookie_bytes`](Self::max_cookie_bytes): 4096, the
    /// size every browser accepts.
    ///
    /// ```
    /// assert_eq!(carafe::CookieStore::DEFAULT_MAX_COOKIE_BYTES, 4096);
    /// ```
    pub const DEFAULT_MAX_COOKIE_BYTES: usize = 4096;

    /// The bytes added to the data's JSON before base64 encoding: version
    /// (1), nonce (12), tag (16), and the JSON envelope with the id and the
    /// three timestamps (90, while timestamps have ten digits, that is until
    /// the year 2286). The cookie value for data of `D` bytes of JSON is
    /// `⌈4 (D + FIXED_OVERHEAD) / 3⌉` bytes long.
    ///
    /// ```
    /// use carafe::CookieStore;
    /// // an empty session ("{}") makes a 162-byte cookie value
    /// assert_eq!((4 * (2 + CookieStore::FIXED_OVERHEAD)).div_ceil(3), 162);
    /// ```
    pub const FIXED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN + 90;

    /// A store with the default limit.
    ///
    /// ```
    /// let store = carafe::CookieStore::new();
    /// assert_eq!(store.cookie_limit(), 4096);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest `Set-Cookie` header value the store may produce, in bytes:
    /// `name=value` plus every attribute, without the header's name. Default
    /// [`DEFAULT_MAX_COOKIE_BYTES`](Self::DEFAULT_MAX_COOKIE_BYTES). Raise it
    /// only if every browser you serve accepts larger cookies; lower it to
    /// leave room for other cookies (browsers also limit the total per
    /// domain). Incoming cookie values longer than this are ignored.
    ///
    /// ```
    /// let store = carafe::CookieStore::new().max_cookie_bytes(3000);
    /// assert_eq!(store.cookie_limit(), 3000);
    /// ```
    #[must_use]
    pub fn max_cookie_bytes(mut self, limit: usize) -> Self {
        self.max_cookie_bytes = limit;
        self
    }

    /// The limit set by [`max_cookie_bytes`](Self::max_cookie_bytes).
    ///
    /// ```
    /// assert_eq!(carafe::CookieStore::default().cookie_limit(), 4096);
    /// ```
    #[must_use]
    pub fn cookie_limit(&self) -> usize {
        self.max_cookie_bytes
    }

    /// Test support, not public API: decodes `value` as a layer whose cookie
    /// is named `cookie_name` would, with `key` as the current key and `old`
    /// as old keys.
    #[doc(hidden)]
    #[must_use]
    pub fn __open(
        &self,
        cookie_name: &str,
        key: &Key,
        old: &[Key],
        value: &[u8],
    ) -> Option<(SessionId, Record)> {
        let value = std::str::from_utf8(value).ok()?;
        Codec::from(self).decode(&Keys::new(key.clone(), old.to_vec(), cookie_name), value)
    }

    /// Test support, not public API: encrypts `plaintext` (not checked to be
    /// JSON) under `key` with the format's layout and `version` (the real one
    /// is 2), for a layer whose cookie is named `cookie_name`, without any
    /// size limit.
    #[doc(hidden)]
    #[must_use]
    pub fn __seal(key: &Key, cookie_name: &str, version: u8, plaintext: &[u8]) -> String {
        // Encryption fails only for plaintexts beyond GCM's 64 GiB limit.
        seal(key, cookie_name, version, plaintext).unwrap_or_default()
    }

    /// Fuzzing entry point, not public API: decodes arbitrary bytes as a
    /// cookie value under a fixed key. Must never panic.
    #[doc(hidden)]
    #[must_use]
    pub fn __fuzz_decode(bytes: &[u8]) -> Option<(SessionId, Record)> {
        let key = Key::from_secret(FUZZ_SECRET).ok()?;
        CookieStore::default().__open(DEFAULT_COOKIE_NAME, &key, &[], bytes)
    }

    /// The secret [`__fuzz_decode`](Self::__fuzz_decode) uses, for building a
    /// seed corpus. Not public API.
    #[doc(hidden)]
    #[must_use]
    pub fn __fuzz_key() -> Option<Key> {
        Key::from_secret(FUZZ_SECRET).ok()
    }
}

impl IntoBackend for CookieStore {
    fn into_backend(self) -> Backend {
        Backend::client(Codec::from(&self))
    }
}

impl sealed::Sealed for CookieStore {}

/// The encoder and decoder the layer calls.
#[derive(Debug)]
struct Codec {
    limit: usize,
}

impl From<&CookieStore> for Codec {
    fn from(store: &CookieStore) -> Self {
        Codec {
            limit: store.max_cookie_bytes,
        }
    }
}

/// The plaintext, as written.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    i: &'a str,
    c: i64,
    a: i64,
    e: i64,
    d: &'a Data,
}

/// The plaintext, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    i: String,
    c: i64,
    a: i64,
    e: i64,
    d: Data,
}

/// The length of unpadded base64 for `n` bytes.
fn base64_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

/// The associated data: the version, the purpose and the cookie's name, so
/// that a cookie cannot be moved to another layer (another cookie name)
/// that shares the secret.
fn aad(version: u8, cookie_name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(2 + PURPOSE.len() + cookie_name.len());
    aad.push(version);
    aad.extend_from_slice(PURPOSE);
    aad.push(0);
    aad.extend_from_slice(cookie_name.as_bytes());
    aad
}

/// `base64url(version || nonce || AES-256-GCM(plaintext))`.
fn seal(key: &Key, cookie_name: &str, version: u8, plaintext: &[u8]) -> Result<String, StoreError> {
    let cipher = Aes256Gcm::new(key.encryption_key().into());
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let aad = aad(version, cookie_name);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| StoreError::Corrupt("the session could not be encrypted".into()))?;
    let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    raw.push(version);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

impl ClientCodec for Codec {
    fn decode(&self, keys: &Keys, value: &str) -> Option<(SessionId, Record)> {
        // Never more than the store would have written: no large allocation
        // or decryption for a hostile cookie.
        if value.len() > self.limit {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < MIN_RAW_LEN {
            return None;
        }
        let (&version, rest) = raw.split_first()?;
        if version != VERSION {
            return None;
        }
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::from_slice(nonce);
        let aad = aad(version, keys.cookie_name());
        let plaintext = keys.all().find_map(|key| {
            Aes256Gcm::new(key.encryption_key().into())
                .decrypt(
                    nonce,
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .ok()
        })?;
        let envelope: EnvelopeIn = serde_json::from_slice(&plaintext).ok()?;
        let id = SessionId::parse(&envelope.i)?;
        let record = Record {
            data: envelope.d,
            created: OffsetDateTime::from_unix_timestamp(envelope.c).ok()?,
            accessed: OffsetDateTime::from_unix_timestamp(envelope.a).ok()?,
            expires: OffsetDateTime::from_unix_timestamp(envelope.e).ok()?,
        };
        Some((id, record))
    }

    fn encode(
        &self,
        keys: &Keys,
        config: &Config,
        id: &SessionId,
        record: &Record,
    ) -> Result<String, StoreError> {
        let id = id.expose();
        let plaintext = serde_json::to_vec(&EnvelopeOut {
            i: &id,
            c: record.created.unix_timestamp(),
            a: record.accessed.unix_timestamp(),
            e: record.expires.unix_timestamp(),
            d: &record.data,
        })
        .map_err(|err| StoreError::Corrupt(format!("the session cannot be serialized: {err}")))?;
        // The exact size is known before encrypting: base64 of the layout.
        let value_len = base64_len(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        let expiry = config.lifetime(&record.data).cookie;
        let attributes = session_cookie(config, String::new(), expiry, record.accessed)
            .to_string()
            .len();
        let size = attributes + value_len;
        if size > self.limit {
            return Err(StoreError::TooLarge {
                size,
                limit: self.limit,
            });
        }
        let value = seal(keys.current(), keys.cookie_name(), VERSION, &plaintext)?;
        debug_assert_eq!(value.len(), value_len);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_length_formula() {
        for n in 0..64usize {
            let exact = URL_SAFE_NO_PAD.encode(vec![0u8; n]).len();
            assert_eq!(exact, base64_len(n), "{n}");
        }
    }
}
