//! Micro-benchmarks of the per-request pieces (issue 9, item 2): cookie
//! verification (valid, tampered, signed with an old key), id generation,
//! and record encode/decode with 1 and 20 keys for the file store (JSON),
//! the Redis store (hash fields) and the cookie store (AEAD). They reach
//! internals through `carafe::__fuzz` (feature `fuzzing`), the entry points
//! the fuzz targets use. `cookie_open` goes through `CookieStore::__open`,
//! which derives the keys on every call (the layer derives them once), so
//! it counts more than a request does. Not measured yet: the planner (no
//! entry point for it).
//!
//! `cargo bench -p carafe-tests --bench micro`

use carafe::__fuzz::{decode_record, decode_redis_hash, encode_redis_hash, Verifier};
use carafe::store::Record;
use carafe::{CookieStore, Key, SessionId};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

const NAME: &str = "__Host-carafe.sid";

/// A record with `n` keys of typical sizes (numbers, short strings, a list).
fn record(n: usize) -> Record {
    let t = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("a time");
    let mut data = carafe::store::Data::new();
    for i in 0..n {
        let value = match i % 3 {
            0 => serde_json::json!(i),
            1 => serde_json::json!(format!("value number {i}")),
            _ => serde_json::json!([i, i + 1, "x"]),
        };
        data.insert(format!("key.{i}"), value);
    }
    Record {
        data,
        created: t,
        accessed: t,
        expires: t + time::Duration::days(14),
    }
}

fn verify(c: &mut Criterion) {
    let key = Key::from_secret([7u8; 64]).expect("a key");
    let old = Key::from_secret([9u8; 64]).expect("a key");
    let signer = Verifier::new(old.clone(), NAME);
    let verifier = Verifier::with_old_keys(key, vec![old], NAME);
    let id = SessionId::generate();
    let current = verifier.sign(&id);
    let with_old = signer.sign(&id);
    // The tag's first character changed: it still decodes, so the HMAC is
    // computed and compared (a tag that does not decode is cheaper still).
    let mut tampered = current.clone().into_bytes();
    let first = current.find('.').expect("id.tag") + 1;
    tampered[first] = if tampered[first] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(verifier.verify(&current).is_some() && verifier.verify(&with_old).is_some());
    assert!(verifier.verify(&tampered).is_none());

    let mut g = c.benchmark_group("cookie_verify");
    g.bench_function("valid", |b| b.iter(|| verifier.verify(black_box(&current))));
    g.bench_function("tampered", |b| b.iter(|| verifier.verify(black_box(&tampered))));
    g.bench_function("old_key", |b| b.iter(|| verifier.verify(black_box(&with_old))));
    g.bench_function("sign", |b| b.iter(|| verifier.sign(black_box(&id))));
    g.finish();

    c.bench_function("id_generate", |b| b.iter(SessionId::generate));
}

fn records(c: &mut Criterion) {
    let key = Key::from_secret([7u8; 64]).expect("a key");
    let cookie = CookieStore::new();
    for n in [1, 20] {
        let record = record(n);
        let json = serde_json::to_vec(&record).expect("encodes");
        let fields = encode_redis_hash(&record).expect("encodes");
        let plaintext = serde_json::to_vec(&serde_json::json!({
            "i": SessionId::generate().expose(), "c": 1_900_000_000, "a": 1_900_000_000,
            "e": 1_901_209_600, "d": record.data,
        }))
        .expect("encodes");
        let sealed = CookieStore::__seal(&key, NAME, 2, &plaintext);
        assert!(cookie.__open(NAME, &key, &[], sealed.as_bytes()).is_some());

        let mut g = c.benchmark_group(format!("record_{n}_keys"));
        g.bench_function("file_encode", |b| {
            b.iter(|| serde_json::to_vec(black_box(&record)))
        });
        g.bench_function("file_decode", |b| {
            b.iter(|| decode_record(black_box(&json), usize::MAX))
        });
        g.bench_function("redis_encode", |b| {
            b.iter(|| encode_redis_hash(black_box(&record)))
        });
        g.bench_function("redis_decode", |b| {
            b.iter_batched(
                || fields.clone(),
                |f| decode_redis_hash(f, false),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("cookie_seal", |b| {
            b.iter(|| CookieStore::__seal(&key, NAME, 2, black_box(&plaintext)))
        });
        g.bench_function("cookie_open", |b| {
            b.iter(|| cookie.__open(NAME, &key, &[], black_box(sealed.as_bytes())))
        });
        g.finish();
    }
}

criterion_group!(micro, verify, records);
criterion_main!(micro);
