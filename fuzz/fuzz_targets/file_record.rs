//! Fuzzes the file store's record decoder: whatever a record file holds,
//! decoding never panics, and a record that decodes encodes again to
//! something that decodes to the same record.
#![no_main]

use carafe::__fuzz::decode_record;
use carafe::FileStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = FileStore::DEFAULT_MAX_RECORD_BYTES;
    let Ok(record) = decode_record(data, limit) else {
        return;
    };
    let again = serde_json::to_vec(&record).expect("a decoded record encodes");
    let decoded = decode_record(&again, limit).expect("a re-encoded record decodes");
    assert_eq!(decoded, record, "a record changed through encode and decode");
});
