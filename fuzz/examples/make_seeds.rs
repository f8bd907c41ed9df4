//! Writes the seed corpora in `fuzz/seeds/<target>/`: a few genuine values
//! made by the helpers the targets use, and edge cases. Run from `fuzz/`:
//!
//!     cargo run --example make_seeds
//!
//! The seeds are committed; rerun this after a format change.

use std::fs;
use std::path::Path;

use carafe::__fuzz::{decode_record, decode_redis_hash, decode_sql_row, encode_redis_hash, Verifier};
use carafe::{CookieStore, FileStore, Key, SessionId};

const NAME: &str = "__Host-carafe.sid";
const ID: &str = "0123456789abcdef0123456789abcdef";
const RECORD: &str = r#"{"data":{"count":1,"user":"ada","nested":{"a":[1,2.5,null,true,"\u00e9"]}},"created":1900000000,"accessed":1900000000,"expires":1900003600}"#;
const PLAINTEXT: &str = r#"{"i":"0123456789abcdef0123456789abcdef","c":1900000000,"a":1900000000,"e":1900003600,"d":{"count":1,"user":"ada"}}"#;

fn write(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).expect("the seeds directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("a seed file");
    }
}

fn main() {
    // decode: cookie-store values under the fuzz key.
    let key = CookieStore::__fuzz_key().expect("the fuzz secret is long enough");
    let seal = |name: &str, version: u8, plaintext: &str| {
        CookieStore::__seal(&key, name, version, plaintext.as_bytes()).into_bytes()
    };
    let genuine = seal(NAME, 2, PLAINTEXT);
    assert!(CookieStore::__fuzz_decode(&genuine).is_some());
    write(
        "decode",
        &[
            ("genuine", genuine),
            ("version-1", seal(NAME, 1, PLAINTEXT)),
            ("other-name", seal("carafe.sid", 2, PLAINTEXT)),
            ("not-json", seal(NAME, 2, "not json")),
            (
                "unknown-field",
                seal(NAME, 2, &PLAINTEXT.replace("\"d\"", "\"x\":0,\"d\"")),
            ),
            (
                "far-timestamps",
                seal(NAME, 2, &PLAINTEXT.replace("1900000000", "-999999999999")),
            ),
            ("empty", Vec::new()),
            ("short", b"AgAAAA".to_vec()),
        ],
    );

    // verify: signed session-id values under the fuzz key.
    let verifier = Verifier::new(
        Key::from_secret(b"carafe fuzz secret: not for production use").expect("long enough"),
        NAME,
    );
    let id = SessionId::parse(ID).expect("a valid id");
    let signed = verifier.sign(&id);
    assert_eq!(verifier.verify(&signed), Some(id));
    let (id_part, tag_part) = signed.split_once('.').expect("id.tag");
    write(
        "verify",
        &[
            ("genuine", signed.clone().into_bytes()),
            ("id-only", id_part.as_bytes().to_vec()),
            ("tag-only", format!(".{tag_part}").into_bytes()),
            (
                "upper-id",
                format!("{}.{tag_part}", id_part.to_uppercase()).into_bytes(),
            ),
            ("padded-tag", format!("{signed}=").into_bytes()),
            ("empty", Vec::new()),
        ],
    );

    // cookie_header: whole Cookie headers. The target's layer has a random
    // key, so none of these is genuine for it.
    write(
        "cookie_header",
        &[
            ("one", format!("{NAME}={signed}").into_bytes()),
            (
                "several",
                format!("theme=dark; {NAME}={signed}; {NAME}=x; {NAME}=y; {NAME}=z").into_bytes(),
            ),
            ("quoted", format!("{NAME}=\"{signed}\"").into_bytes()),
            (
                "odd-bytes",
                format!("x=\u{e9}\u{ff}; {NAME}={signed}; ;;=;").into_bytes(),
            ),
            ("other-name", format!("carafe.sid={signed}").into_bytes()),
            ("empty-value", format!("{NAME}=").into_bytes()),
        ],
    );

    // file_record: record files.
    let limit = FileStore::DEFAULT_MAX_RECORD_BYTES;
    assert!(decode_record(RECORD.as_bytes(), limit).is_ok());
    write(
        "file_record",
        &[
            ("genuine", RECORD.as_bytes().to_vec()),
            ("empty-data", br#"{"data":{},"created":0,"accessed":0,"expires":0}"#.to_vec()),
            ("far-timestamps", br#"{"data":{},"created":-377705116800,"accessed":253402300799,"expires":9223372036854775807}"#.to_vec()),
            ("floats", br#"{"data":{"f":1e308,"g":-0.0,"h":5e-324,"i":18446744073709551616},"created":1,"accessed":1,"expires":1}"#.to_vec()),
            ("deep", format!("{{\"data\":{{\"d\":{}1{}}},\"created\":1,\"accessed\":1,\"expires\":1}}", "[".repeat(200), "]".repeat(200)).into_bytes()),
            ("empty", Vec::new()),
        ],
    );

    // redis_hash: a flag byte (bit 0: RESP3 map), then fields and values
    // each ended by a 0 byte; the genuine one is what the store writes.
    let record = decode_record(RECORD.as_bytes(), limit).expect("the record decodes");
    let hash = |flags: u8, pairs: &[(Vec<u8>, Vec<u8>)]| {
        let mut bytes = vec![flags];
        for (field, value) in pairs {
            bytes.extend_from_slice(field);
            bytes.push(0);
            bytes.extend_from_slice(value);
            bytes.push(0);
        }
        bytes
    };
    let fields = encode_redis_hash(&record).expect("the record encodes");
    assert_eq!(decode_redis_hash(fields.clone(), false).ok().flatten().as_ref(), Some(&record));
    let meta = |created: &str| {
        vec![
            (b"m:created".to_vec(), created.as_bytes().to_vec()),
            (b"m:accessed".to_vec(), b"1900000000.25".to_vec()),
            (b"m:expires".to_vec(), b"1900003600".to_vec()),
        ]
    };
    let mut odd = meta("1900000000");
    odd.push((b"d:".to_vec(), b"[1,{\"a\":null}]".to_vec()));
    odd.push(("d:\u{fc}".as_bytes().to_vec(), b"1e308".to_vec()));
    let mut unknown = meta("1900000000");
    unknown.push((b"x:odd".to_vec(), b"1".to_vec()));
    write(
        "redis_hash",
        &[
            ("genuine", hash(0, &fields)),
            ("genuine-map", hash(1, &fields)),
            ("odd-keys", hash(1, &odd)),
            ("bad-time", hash(0, &meta("-0."))),
            ("unknown-field", hash(2, &unknown)),
        ],
    );

    // sql_row: a flag byte (bits 0-3: data, created, accessed, expires are
    // NULL), three little-endian i64 timestamps, then the data column.
    let row = |flags: u8, times: [i64; 3], data: &[u8]| {
        let mut bytes = vec![flags];
        for t in times {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    };
    let data = br#"{"count":1,"user":"ada","nested":{"a":[1,2.5,null,true,"\u00e9"]}}"#;
    assert!(decode_sql_row(Some(data), Some(1_900_000_000), Some(1_900_000_000), Some(1_900_003_600)).is_ok());
    write(
        "sql_row",
        &[
            ("genuine", row(0, [1_900_000_000, 1_900_000_000, 1_900_003_600], data)),
            ("null-data", row(1, [0, 0, 0], b"")),
            ("null-time", row(4, [1, 2, 3], b"{}")),
            ("not-object", row(0, [-1, 1 << 62, i64::MIN], b"[1,2]")),
            ("far-times", row(0, [i64::MAX, 0, 0], br#"{"a":"\u0000"}"#)),
        ],
    );
}
