//! Fuzzes the SQL stores' row decoder: whatever a row holds (any text in
//! `data`, any timestamps, `NULL`s), decoding never panics, and a row that
//! decodes, written back, decodes to the same record.
//!
//! Input: one flag byte (bits 0-3: `data`, `created_at`, `accessed_at`,
//! `expires_at` are `NULL`), three little-endian `i64` timestamps, then the
//! `data` column's bytes.
#![no_main]

use carafe::__fuzz::decode_sql_row;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 25 {
        return;
    }
    let flags = data[0];
    let int = |i: usize| {
        let bytes: [u8; 8] = data[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes");
        (flags & (2 << i) == 0).then(|| i64::from_le_bytes(bytes))
    };
    let text = (flags & 1 == 0).then(|| &data[25..]);
    let Ok(record) = decode_sql_row(text, int(0), int(1), int(2)) else {
        return;
    };
    let json = serde_json::to_vec(&record.data).expect("decoded data encodes");
    let again = decode_sql_row(
        Some(&json),
        Some(record.created.unix_timestamp()),
        Some(record.accessed.unix_timestamp()),
        Some(record.expires.unix_timestamp()),
    )
    .expect("a re-encoded row decodes");
    assert_eq!(again, record, "a record changed through encode and decode");
});
