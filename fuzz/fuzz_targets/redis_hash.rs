//! Fuzzes the Redis store's record decoder: whatever a session's hash
//! holds (any field names and values, as a RESP2 array or a RESP3 map),
//! decoding never panics, and a record that decodes is written back as the
//! same fields, which decode to the same record.
//!
//! Input: one flag byte (bit 0: a RESP3 map), then field and value byte
//! strings, each ended by a 0 byte.
#![no_main]

use carafe::__fuzz::{decode_redis_hash, encode_redis_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = parts
        .chunks_exact(2)
        .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
        .collect();
    let Ok(Some(record)) = decode_redis_hash(pairs, flags & 1 == 1) else {
        return;
    };
    let fields = encode_redis_hash(&record).expect("a decoded record encodes");
    let again = decode_redis_hash(fields, flags & 2 == 2).expect("re-encoded fields decode");
    assert_eq!(again.as_ref(), Some(&record), "a record changed through encode and decode");
});
