//! Fuzzes the cookie store's decode path: whatever the cookie, decoding
//! never panics, and a genuine cookie changed in any way never decodes.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use carafe::CookieStore;
use libfuzzer_sys::fuzz_target;

/// A genuine cookie under the fuzz key, made once per process.
fn genuine() -> &'static [u8] {
    static GENUINE: OnceLock<Vec<u8>> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let key = CookieStore::__fuzz_key().expect("the fuzz secret is long enough");
        let plaintext = concat!(
            r#"{"i":"0123456789abcdef0123456789abcdef","c":1900000000,"a":1900000000,"#,
            r#""e":1900003600,"d":{"count":1,"user":"ada"}}"#
        );
        let value = CookieStore::__seal(&key, "__Host-carafe.sid", 2, plaintext.as_bytes());
        assert!(
            CookieStore::__fuzz_decode(value.as_bytes()).is_some(),
            "the genuine cookie decodes"
        );
        value.into_bytes()
    })
}

fuzz_target!(|data: &[u8]| {
    // 1. the input as a cookie value
    let _ = CookieStore::__fuzz_decode(data);

    // 2. the input as an XOR mask over the genuine cookie's decoded bytes
    let genuine = genuine();
    let Ok(mut raw) = URL_SAFE_NO_PAD.decode(genuine) else {
        unreachable!("the genuine cookie is base64")
    };
    for (byte, mask) in raw.iter_mut().zip(data) {
        *byte ^= mask;
    }
    let changed = data.iter().take(raw.len()).any(|&m| m != 0);
    let accepted = CookieStore::__fuzz_decode(URL_SAFE_NO_PAD.encode(&raw).as_bytes()).is_some();
    assert_eq!(
        accepted, !changed,
        "a changed cookie decoded, or the genuine one did not"
    );

    // 3. the input spliced into the genuine cookie's text
    if let Some((&at, rest)) = data.split_first() {
        let at = usize::from(at) % (genuine.len() + 1);
        let mut spliced = genuine[..at].to_vec();
        spliced.extend_from_slice(rest);
        spliced.extend_from_slice(&genuine[at..]);
        if spliced != genuine {
            assert!(
                CookieStore::__fuzz_decode(&spliced).is_none(),
                "a spliced cookie decoded"
            );
        }
    }
});
