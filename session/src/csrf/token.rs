//! The per-session CSRF secret and the masked tokens made from it: pure
//! functions, no I/O.
//!
//! A token is `base64url(mask || secret XOR mask)` with a fresh random mask
//! for every token handed out (Django's masking), so that the bytes a page
//! carries change on every response and a compression side channel (BREACH)
//! cannot recover the secret. Every token of a session unmasks to the same
//! secret; a token is checked by unmasking it and comparing the result with
//! the session's secret in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::key::fill_random;

/// Bytes of the secret (and of the mask).
pub(crate) const SECRET_LEN: usize = 32;

/// A session's CSRF secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret([u8; SECRET_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new secret from the operating system's CSPRNG.
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        fill_random(&mut bytes);
        Secret(bytes)
    }

    /// The form kept in the session: base64url.
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The secret from its session form; `None` for anything else (a value
    /// someone else wrote under the key: the session then gets a new one).
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut bytes = [0u8; SECRET_LEN];
        if text.len() != 43 {
            return None;
        }
        let n = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
        (n == SECRET_LEN).then_some(Secret(bytes))
    }

    /// A token for a page, masked with `mask`.
    pub(crate) fn mask_with(&self, mask: [u8; SECRET_LEN]) -> String {
        let mut raw = [0u8; 2 * SECRET_LEN];
        raw[..SECRET_LEN].copy_from_slice(&mask);
        for (i, byte) in self.0.iter().enumerate() {
            raw[SECRET_LEN + i] = byte ^ mask[i];
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A token for a page, masked with a fresh random mask.
    pub(crate) fn mask(&self) -> String {
        let mut mask = [0u8; SECRET_LEN];
        fill_random(&mut mask);
        self.mask_with(mask)
    }

    /// Whether `token` (as sent back by the browser) was made from this
    /// secret. Constant time in the token's content.
    pub(crate) fn accepts(&self, token: &str) -> bool {
        let Some(unmasked) = unmask(token) else {
            return false;
        };
        bool::from(unmasked.ct_eq(&self.0))
    }
}

/// The secret a token carries; `None` if it is not a token at all.
fn unmask(token: &str) -> Option<[u8; SECRET_LEN]> {
    // 64 bytes are 86 base64url characters without padding.
    if token.len() != 86 {
        return None;
    }
    let mut raw = [0u8; 2 * SECRET_LEN];
    let n = URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()?;
    if n != raw.len() {
        return None;
    }
    let mut secret = [0u8; SECRET_LEN];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = raw[SECRET_LEN + i] ^ raw[i];
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_mask_gives_another_token_that_is_accepted() {
        let secret = Secret::generate();
        let (a, b) = (secret.mask(), secret.mask());
        assert_ne!(a, b, "masked per token");
        assert!(secret.accepts(&a) && secret.accepts(&b));
        assert!(!Secret::generate().accepts(&a), "another session's token");
    }

    #[test]
    fn what_is_not_a_token_is_refused() {
        let secret = Secret::generate();
        let token = secret.mask();
        for bad in [
            String::new(),
            "x".repeat(86),
            token[..85].to_owned(),
            format!("{token}A"),
            secret.encode(),
            format!("{}=", &token[..85]),
            "é".repeat(43),
        ] {
            assert!(!secret.accepts(&bad), "{bad:?}");
        }
    }

    #[test]
    fn the_session_form_round_trips_and_rejects_other_values() {
        let secret = Secret::generate();
        assert_eq!(Secret::decode(&secret.encode()), Some(secret));
        for bad in ["", "short", &"a".repeat(44), &"*".repeat(43)] {
            assert_eq!(Secret::decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn a_changed_character_anywhere_is_refused(
            secret in any::<[u8; 32]>(),
            mask in any::<[u8; 32]>(),
            at in 0usize..86,
            to in proptest::char::range('!', '~'),
        ) {
            let secret = Secret(secret);
            let token = secret.mask_with(mask);
            prop_assert!(secret.accepts(&token));
            let mut changed: Vec<char> = token.chars().collect();
            prop_assume!(changed[at] != to);
            changed[at] = to;
            let changed: String = changed.into_iter().collect();
            // A changed character either breaks the encoding or changes the
            // unmasked secret: base64url maps each character to 6 bits, and
            // the last character's 2 spare bits are checked by the decoder.
            prop_assert!(!secret.accepts(&changed), "{}", changed);
        }
    }
}
