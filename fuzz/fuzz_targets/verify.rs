//! Fuzzes the session-id cookie verifier: whatever the value, verifying
//! never panics, and a genuine `<id>.<tag>` value with any byte changed
//! never verifies.
#![no_main]

use std::sync::OnceLock;

use carafe::__fuzz::Verifier;
use carafe::{Key, SessionId};
use libfuzzer_sys::fuzz_target;

/// The verifier under the fuzz key and a genuine value it signed, made once.
fn fixture() -> &'static (Verifier, String, SessionId) {
    static FIXTURE: OnceLock<(Verifier, String, SessionId)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = Key::from_secret(b"carafe fuzz secret: not for production use")
            .expect("the fuzz secret is long enough");
        let verifier = Verifier::new(key, "__Host-carafe.sid");
        let id = SessionId::parse("0123456789abcdef0123456789abcdef").expect("a valid id");
        let value = verifier.sign(&id);
        assert_eq!(
            verifier.verify(&value),
            Some(id.clone()),
            "the genuine value verifies"
        );
        (verifier, value, id)
    })
}

fuzz_target!(|data: &[u8]| {
    let (verifier, genuine, id) = fixture();

    // 1. the input as a cookie value: only the genuine value verifies
    if let Ok(text) = std::str::from_utf8(data) {
        let verified = verifier.verify(text);
        if text == genuine {
            assert_eq!(verified.as_ref(), Some(id));
        } else {
            assert_eq!(verified, None, "a value other than the genuine one verified");
        }
    }

    // 2. the input as an XOR mask over the genuine value's bytes
    let mut bytes = genuine.clone().into_bytes();
    for (byte, mask) in bytes.iter_mut().zip(data) {
        *byte ^= mask;
    }
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let changed = text != genuine;
        assert_eq!(
            verifier.verify(text).is_some(),
            !changed,
            "a changed value verified, or the genuine one did not"
        );
    }
});
