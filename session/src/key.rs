//! Secrets, the keys derived from them, and cookie signing.
//!
//! The application gives one current secret and any number of old ones.
//! From each secret, HKDF-SHA256 derives one key per purpose (signing
//! session-id cookies, encrypting client-side sessions), so the same raw
//! bytes are never used for two things. New cookies are signed with the
//! current key; cookies signed with any old key are still accepted, which is
//! how a secret is rotated without logging anyone out.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::error::ConfigError;
use crate::id::{SessionId, StoreKey, ID_LEN};

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Base64url length of a 32-byte HMAC-SHA256 tag, without padding.
const TAG_B64_LEN: usize = 43;

/// The longest cookie value [`Keys::verify`] looks at: an id, a dot and a tag.
pub(crate) const SIGNED_LEN: usize = ID_LEN + 1 + TAG_B64_LEN;

/// Keys derived from one application secret.
///
/// The derived keys are wiped from memory when the `Key` is dropped, and its
/// `Debug` output shows none of them.
///
/// ```
/// let key = carafe::Key::from_secret(b"a secret of at least thirty-two bytes!")?;
/// # Ok::<(), carafe::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Key {
    signing: [u8; 32],
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    encryption: [u8; 32],
    /// Keys the handles that name a user's sessions (`owner_sessions`).
    handles: [u8; 32],
}

impl Key {
    /// Derives the keys from `secret`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::SecretTooShort`] if `secret` has fewer than
    /// [`MIN_SECRET_LEN`] bytes.
    ///
    /// ```
    /// assert!(carafe::Key::from_secret(b"too short").is_err());
    /// ```
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        let hk = Hkdf::<Sha256>::new(Some(b"carafe v1"), secret);
        // Derived in place, so that no copy is left behind unwiped.
        let mut key = Key {
            signing: [0u8; 32],
            encryption: [0u8; 32],
            handles: [0u8; 32],
        };
        // 32 bytes is far below HKDF-SHA256's limit of 8160: expand cannot fail.
        let _ = hk.expand(b"cookie signing", &mut key.signing);
        let _ = hk.expand(b"cookie encryption", &mut key.encryption);
        let _ = hk.expand(b"session handles", &mut key.handles);
        Ok(key)
    }

    /// A random key from the operating system's CSPRNG, for one run of a
    /// program: sessions signed with it do not survive a restart.
    ///
    /// ```
    /// let key = carafe::Key::generate();
    /// ```
    #[must_use]
    pub fn generate() -> Self {
        let mut secret = [0u8; 64];
        fill_random(&mut secret);
        let key = Key::from_secret(secret);
        secret.zeroize();
        match key {
            Ok(key) => key,
            Err(_) => unreachable!("64 bytes is longer than the minimum"),
        }
    }

    /// The HMAC state for signing ids of the cookie named `cookie_name`,
    /// keyed and with the purpose and the name already absorbed: a cookie
    /// signed for one cookie name does not verify under another, even with
    /// the same secret.
    fn signer(&self, cookie_name: &str) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(&self.signing) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        // Cookie names hold no NUL (the builder checks them): the input is
        // unambiguous.
        mac.update(b"carafe session id\0");
        mac.update(cookie_name.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// The 32-byte key for encrypting client-side sessions.
    #[cfg(feature = "cookie-store")]
    pub(crate) fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }
}

impl Key {
    /// Overwrites the key material with zeros (what dropping a key does).
    fn wipe(&mut self) {
        self.signing.zeroize();
        self.encryption.zeroize();
        self.handles.zeroize();
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Err(err) = getrandom::fill(buf) {
        // Without an entropy source no secure id or key can be made at all;
        // continuing would hand out guessable sessions.
        panic!("the operating system's random number generator failed: {err}");
    }
}

/// The current key and the old ones still accepted, for one cookie name.
#[derive(Clone)]
pub(crate) struct Keys {
    current: Key,
    old: Vec<Key>,
    /// The cookie name every signature and (client-side) ciphertext is
    /// bound to.
    cookie_name: String,
    /// One signing state per key, current first, keyed once here rather
    /// than on every request (HMAC's key schedule is two of the five
    /// SHA-256 compressions a verification would otherwise cost).
    signers: Vec<HmacSha256>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("cookie_name", &self.cookie_name)
            .field("old", &self.old.len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub(crate) fn new(current: Key, old: Vec<Key>, cookie_name: &str) -> Self {
        let signers = std::iter::once(&current)
            .chain(&old)
            .map(|key| key.signer(cookie_name))
            .collect();
        Keys {
            current,
            old,
            cookie_name: cookie_name.to_owned(),
            signers,
        }
    }

    /// The cookie name the keys are bound to.
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) fn current(&self) -> &Key {
        &self.current
    }

    /// Every accepted key, current first.
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.old)
    }

    /// The cookie value for `id`: the id, a dot, and the base64url HMAC tag.
    pub(crate) fn sign(&self, id: &SessionId) -> String {
        let mut buf = [0u8; ID_LEN];
        let id = id.encode(&mut buf);
        let mut mac = self.signers[0].clone();
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut value = String::with_capacity(SIGNED_LEN);
        value.push_str(id);
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut value);
        value
    }

    /// The handle naming the session filed under `key` in a list of a
    /// user's sessions: the base64url HMAC-SHA256, under the current key's
    /// handle key, of the store key. Stable while the key and the secret
    /// are; it names the session without being its id or its store key, and
    /// cannot be turned into either.
    pub(crate) fn handle(&self, key: &StoreKey) -> String {
        let mut mac = match HmacSha256::new_from_slice(&self.current.handles) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(b"carafe session handle\0");
        mac.update(key.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The id in a cookie value, if its tag verifies under any accepted key,
    /// and whether that key is an old one (the cookie should be re-signed).
    /// The tag is compared in constant time.
    pub(crate) fn verify(&self, value: &str) -> Option<(SessionId, bool)> {
        if value.len() != SIGNED_LEN {
            return None;
        }
        let (id, tag) = value.split_once('.')?;
        let parsed = SessionId::parse(id)?;
        let mut raw = [0u8; 33];
        let n = URL_SAFE_NO_PAD.decode_slice(tag, &mut raw).ok()?;
        if n != 32 {
            return None;
        }
        let tag = &raw[..32];
        let index = self.signers.iter().position(|signer| {
            let mut mac = signer.clone();
            mac.update(id.as_bytes());
            mac.verify_slice(tag).is_ok()
        })?;
        Some((parsed, index > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_key_wipes_it() {
        let mut key = Key::generate();
        assert_ne!(key.signing, [0u8; 32]);
        assert_ne!(key.encryption, [0u8; 32]);
        assert_ne!(key.handles, [0u8; 32]);
        key.wipe();
        assert_eq!((key.signing, key.encryption), ([0u8; 32], [0u8; 32]));
        assert_eq!(key.handles, [0u8; 32]);
    }

    fn keys() -> Keys {
        Keys::new(Key::from_secret([7u8; 32]).unwrap(), vec![], "sid")
    }

    #[test]
    fn round_trip() {
        let keys = keys();
        let id = SessionId::generate();
        let value = keys.sign(&id);
        assert_eq!(value.len(), SIGNED_LEN);
        assert_eq!(keys.verify(&value), Some((id, false)));
    }

    #[test]
    fn rejects_tampering() {
        let keys = keys();
        let id = SessionId::generate();
        let value = keys.sign(&id);
        // flip each character in turn
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != value {
                assert_eq!(keys.verify(&tampered), None, "position {i}");
            }
        }
        assert_eq!(keys.verify(&value[..value.len() - 1]), None);
        assert_eq!(keys.verify(""), None);
        assert_eq!(keys.verify(&format!("{value}A")), None);
    }

    #[test]
    fn other_secret_is_rejected_old_is_accepted() {
        let old = Key::from_secret([1u8; 32]).unwrap();
        let new = Key::from_secret([2u8; 32]).unwrap();
        let id = SessionId::generate();
        let signed_old = Keys::new(old.clone(), vec![], "sid").sign(&id);
        assert_eq!(Keys::new(new.clone(), vec![], "sid").verify(&signed_old), None);
        let rotated = Keys::new(new, vec![old], "sid");
        assert_eq!(rotated.verify(&signed_old), Some((id.clone(), true)));
        assert_eq!(rotated.verify(&rotated.sign(&id)), Some((id.clone(), false)));
        assert_ne!(rotated.sign(&id), signed_old);
    }

    #[test]
    fn a_cookie_is_bound_to_its_name() {
        let key = Key::from_secret([5u8; 32]).unwrap();
        let id = SessionId::generate();
        let app = Keys::new(key.clone(), vec![], "app.sid");
        let admin = Keys::new(key.clone(), vec![], "admin.sid");
        let value = app.sign(&id);
        assert_eq!(admin.verify(&value), None);
        assert_eq!(app.verify(&value), Some((id.clone(), false)));
        // An old key is bound to the name as well.
        let rotated = Keys::new(Key::from_secret([6u8; 32]).unwrap(), vec![key], "admin.sid");
        assert_eq!(rotated.verify(&value), None);
    }

    #[test]
    fn handles_are_stable_keyed_and_not_the_key() {
        let keys = keys();
        let key = SessionId::generate().store_key();
        let handle = keys.handle(&key);
        assert_eq!(handle, keys.handle(&key));
        assert_eq!(handle.len(), 43);
        assert!(!handle.contains(key.as_str()) && !key.as_str().contains(&handle));
        assert_ne!(handle, keys.handle(&SessionId::generate().store_key()));
        // Another secret gives another handle for the same session.
        let other = Keys::new(Key::from_secret([8u8; 32]).unwrap(), vec![], "sid");
        assert_ne!(other.handle(&key), handle);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = Key::from_secret([9u8; 32]).unwrap();
        let keys = Keys::new(key.clone(), vec![key.clone()], "sid");
        let shown = format!("{key:?} {keys:?}");
        assert_eq!(shown, "Key(..) Keys { cookie_name: \"sid\", old: 1, .. }");
    }

    #[test]
    fn purposes_get_different_keys() {
        let key = Key::from_secret([3u8; 40]).unwrap();
        assert_ne!(key.signing, key.encryption);
        assert_ne!(key.handles, key.signing);
        assert_ne!(key.handles, key.encryption);
        assert_ne!(&key.signing[..], &[3u8; 32][..]);
    }
}
