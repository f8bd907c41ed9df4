//! Session ids and the keys stores file records under.
//!
//! A [`SessionId`] is the secret the browser holds: 122 random bits from the
//! operating system's CSPRNG (a version-4 UUID, Beaker's default), written as
//! 32 lowercase hex digits. It never appears in logs: its `Debug` and
//! `Display` forms show only a short hash.
//!
//! Stores never see the id itself. They file records under a [`StoreKey`], the
//! SHA-256 of the id, so a leaked store does not leak usable ids, a lookup in
//! the store cannot be timed to guess an id, and every key is safe as a file
//! name (64 hex digits).

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The length of a session id in its text form.
pub(crate) const ID_LEN: usize = 32;

/// A session id: 122 bits from a CSPRNG.
///
/// `Debug` and `Display` print a short hash of the id, never the id, so an id
/// cannot end up in a log by accident. Use [`SessionId::expose`] where the
/// id itself is really needed.
///
/// ```
/// let id = carafe::SessionId::generate();
/// assert_eq!(id.expose().len(), 32);
/// assert!(!format!("{id}").contains(&id.expose()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A new random id from the operating system's CSPRNG.
    ///
    /// ```
    /// assert_ne!(carafe::SessionId::generate(), carafe::SessionId::generate());
    /// ```
    #[must_use]
    pub fn generate() -> Self {
        SessionId(Uuid::new_v4())
    }

    /// Parses the text form (32 lowercase hex digits). Anything else is
    /// `None`: there is no other accepted spelling of an id.
    ///
    /// ```
    /// use carafe::SessionId;
    /// let id = SessionId::generate();
    /// assert_eq!(SessionId::parse(&id.expose()), Some(id));
    /// assert_eq!(SessionId::parse("../../etc/passwd"), None);
    /// ```
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ID_LEN || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        Uuid::try_parse(text).ok().map(SessionId)
    }

    /// The id itself, as sent in the cookie. Treat it as a password.
    ///
    /// ```
    /// let id = carafe::SessionId::generate();
    /// assert!(id.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    /// ```
    #[must_use]
    pub fn expose(&self) -> String {
        self.0.simple().to_string()
    }

    /// Writes the text form into `buf` without allocating.
    pub(crate) fn encode<'a>(&self, buf: &'a mut [u8; ID_LEN]) -> &'a str {
        self.0.simple().encode_lower(buf)
    }

    /// The key stores file this session's record under.
    ///
    /// ```
    /// let id = carafe::SessionId::generate();
    /// assert_eq!(id.store_key(), id.store_key());
    /// assert_eq!(id.store_key().as_str().len(), 64);
    /// ```
    #[must_use]
    pub fn store_key(&self) -> StoreKey {
        let mut buf = [0u8; ID_LEN];
        let digest = Sha256::new()
            .chain_update(b"carafe session id\0")
            .chain_update(self.encode(&mut buf).as_bytes())
            .finalize();
        StoreKey(hex::encode(digest))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.store_key().short())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.store_key().short())
    }
}

/// The key a store files a session's record under: the SHA-256 of the
/// session id, as 64 lowercase hex digits.
///
/// A `StoreKey` can only be made from a [`SessionId`] or parsed from exactly
/// 64 lowercase hex digits, so a store may use it as a file name, a Redis key
/// or a primary key without further checks.
///
/// ```
/// use carafe::SessionId;
/// use carafe::store::StoreKey;
/// let key = SessionId::generate().store_key();
/// assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
/// assert_eq!(StoreKey::parse("../secret"), None);
/// println!("session {key}"); // prints a 12-digit prefix only
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey(String);

impl StoreKey {
    /// Parses 64 lowercase hex digits, the form [`StoreKey::as_str`] gives.
    /// Used by stores that list their records (for example to reap expired
    /// files); anything else is `None`.
    ///
    /// ```
    /// assert!(carafe::store::StoreKey::parse(&"a".repeat(64)).is_some());
    /// assert!(carafe::store::StoreKey::parse(&"A".repeat(64)).is_none());
    /// ```
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| StoreKey(text.to_owned()))
    }

    /// The full key, 64 lowercase hex digits.
    ///
    /// ```
    /// let key = carafe::SessionId::generate().store_key();
    /// assert!(key.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 12-digit prefix of the key, for logs.
    ///
    /// ```
    /// let key = carafe::SessionId::generate().store_key();
    /// assert_eq!(key.short().len(), 12);
    /// ```
    #[must_use]
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}…)", self.short())
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_everything_but_lowercase_hex() {
        let id = SessionId::generate();
        let text = id.expose();
        assert_eq!(SessionId::parse(&text), Some(id));
        for bad in [
            "",
            "0",
            &text.to_uppercase(),
            &format!("{text}0"),
            &text[1..],
            "../../../../../../etc/passwd/aaaaaaaaaaaaaaa",
            "0000000-0000-0000-0000-0000000000000",
            "gggggggggggggggggggggggggggggggg",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatting_never_shows_the_id() {
        let id = SessionId::generate();
        let text = id.expose();
        assert!(!format!("{id}").contains(&text[..8]));
        assert!(!format!("{id:?}").contains(&text[..8]));
    }

    /// Not a proof of randomness (that is the OS CSPRNG's), but a check
    /// that ids carry 122 independent-looking random bits: every one of
    /// them is set in about half of 10,000 ids (a bias to 45% or 55% is
    /// ten standard deviations out), the 6 fixed bits are UUID v4's, and no
    /// id repeats.
    #[test]
    fn ids_carry_122_random_bits() {
        const N: usize = 10_000;
        let mut seen = std::collections::HashSet::with_capacity(N);
        let mut ones = [0usize; 128];
        for _ in 0..N {
            let id = SessionId::generate();
            let bits = id.0.as_u128();
            assert!(seen.insert(bits), "an id repeated");
            assert_eq!(id.0.get_version_num(), 4);
            assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += usize::from(bits >> bit & 1 == 1);
            }
        }
        // bits 76..80 are the version, 62..64 the variant (counted from the
        // least significant bit of the u128)
        let fixed = |bit: usize| (76..80).contains(&bit) || (62..64).contains(&bit);
        let random: Vec<usize> = (0..128).filter(|&b| !fixed(b)).collect();
        assert_eq!(random.len(), 122);
        for bit in random {
            let share = ones[bit] * 100 / N;
            assert!((45..55).contains(&share), "bit {bit} set in {share}% of ids");
        }
    }

    #[test]
    fn store_key_is_a_hash_not_the_id() {
        let id = SessionId::generate();
        let key = id.store_key();
        assert_eq!(key.as_str().len(), 64);
        assert!(!key.as_str().contains(&id.expose()));
    }
}
