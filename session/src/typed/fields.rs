//! Reading a typed view's fields out of the session's data, and finding
//! which fields the view changed: each field's JSON bytes are compared with
//! the bytes it had when the view loaded it (or last wrote it), so "changed"
//! is decided by serde_json itself, whatever the field's type.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{category, TypedError};
use crate::record::Data;
use crate::typed::SessionData;

/// Reads fields out of the session's data while a typed view is built.
/// Generated code calls one method per stored field, in field order.
#[allow(missing_debug_implementations)]
pub struct Reader<'a> {
    data: &'a Data,
    type_name: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new<T: SessionData>(data: &'a Data) -> Self {
        Reader {
            data,
            type_name: std::any::type_name::<T>(),
        }
    }

    /// A field with no default: missing is an error unless the type accepts
    /// JSON `null` (as `Option` does, giving `None`); an undecodable value is
    /// an error.
    ///
    /// # Errors
    ///
    /// [`TypedError::Missing`] or [`TypedError::Invalid`].
    pub fn required<F: Serialize + DeserializeOwned>(&mut self, key: &'static str) -> Result<F, TypedError> {
        match self.data.get(key) {
            Some(value) => F::deserialize(value).map_err(|source| TypedError::Invalid {
                type_name: self.type_name,
                key,
                source,
            }),
            None => F::deserialize(&Value::Null).map_err(|_| TypedError::Missing {
                type_name: self.type_name,
                key,
            }),
        }
    }

    /// A field with a default: missing gives `default()`; an undecodable
    /// value gives `default()` and a warning naming the key (never the
    /// value).
    pub fn or_else<F: Serialize + DeserializeOwned>(
        &mut self,
        key: &'static str,
        default: impl FnOnce() -> F,
    ) -> F {
        let Some(value) = self.data.get(key) else {
            return default();
        };
        match F::deserialize(value) {
            Ok(value) => value,
            Err(err) => {
                tracing::warn!(
                    key,
                    r#type = self.type_name,
                    error = category(&err),
                    "stored session value no longer fits its field; using the field's default"
                );
                default()
            }
        }
    }

    /// Like [`Reader::or_else`] with the default already made (for
    /// `#[session(default)]` on the struct, whose `Default` value provides
    /// every missing field).
    pub fn or_value<F: Serialize + DeserializeOwned>(&mut self, key: &'static str, default: F) -> F {
        self.or_else(key, || default)
    }
}

/// Each stored field's JSON, in field order: what a view compares its
/// fields with to find the ones it changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    bytes: Vec<u8>,
    /// Where each field's JSON is in `bytes`; `None` when unknown (a view
    /// made from a whole value) or when the field did not serialize.
    spans: Vec<Option<(usize, usize)>>,
}

impl Baseline {
    /// The fields of `value` as they are now.
    pub(crate) fn of<T: SessionData>(value: &T) -> Self {
        let mut baseline = Baseline::default();
        value.__store(&mut Writer {
            target: Target::Record(&mut baseline),
        });
        baseline
    }

    /// A baseline that matches no value: every field counts as changed.
    pub(crate) fn unknown() -> Self {
        Baseline::default()
    }

    fn field(&self, index: usize) -> Option<&[u8]> {
        let (start, end) = (*self.spans.get(index)?)?;
        self.bytes.get(start..end)
    }

    fn push<F: Serialize + ?Sized>(&mut self, key: &'static str, value: &F) {
        let start = self.bytes.len();
        match serde_json::to_writer(&mut self.bytes, value) {
            Ok(()) => self.spans.push(Some((start, self.bytes.len()))),
            Err(err) => {
                self.bytes.truncate(start);
                self.spans.push(None);
                tracing::error!(
                    key,
                    error = category(&err),
                    "session field cannot be serialized; it is not stored"
                );
            }
        }
    }
}

/// The fields a view changed since `old`, with their new values, and the
/// baseline to compare the next flush with.
pub(crate) fn changes<T: SessionData>(value: &T, old: &Baseline) -> (Vec<(&'static str, Value)>, Baseline) {
    let mut next = Baseline {
        bytes: Vec::with_capacity(old.bytes.len()),
        spans: Vec::with_capacity(old.spans.len()),
    };
    let mut changed = Vec::new();
    value.__store(&mut Writer {
        target: Target::Compare {
            old,
            next: &mut next,
            changed: &mut changed,
        },
    });
    let values = changed
        .into_iter()
        .filter_map(|(key, index)| {
            let bytes = next.field(index)?;
            match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => Some((key, value)),
                Err(err) => {
                    // serde_json reads back what it wrote; this is a
                    // serializer that wrote something other than JSON.
                    tracing::error!(
                        key,
                        error = category(&err),
                        "session field did not serialize to JSON; it is not stored"
                    );
                    None
                }
            }
        })
        .collect();
    (values, next)
}

/// Passes over a typed view's fields. Generated code calls
/// [`Writer::field`] once per stored field, in field order.
#[allow(missing_debug_implementations)]
pub struct Writer<'a> {
    target: Target<'a>,
}

enum Target<'a> {
    /// Serialize each field into a baseline.
    Record(&'a mut Baseline),
    /// Serialize each field into `next`, noting the fields whose JSON
    /// differs from `old`'s.
    Compare {
        old: &'a Baseline,
        next: &'a mut Baseline,
        changed: &'a mut Vec<(&'static str, usize)>,
    },
}

impl Writer<'_> {
    /// One stored field.
    pub fn field<F: Serialize + ?Sized>(&mut self, key: &'static str, value: &F) {
        match &mut self.target {
            Target::Record(baseline) => baseline.push(key, value),
            Target::Compare { old, next, changed } => {
                let index = next.spans.len();
                next.push(key, value);
                if let Some(now) = next.field(index) {
                    if old.field(index) != Some(now) {
                        changed.push((key, index));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// A hand-written view of two keys (what the derive generates).
    #[derive(Debug, Clone, PartialEq)]
    struct Two {
        n: u32,
        tags: BTreeMap<String, f64>,
    }

    impl SessionData for Two {
        const AUTO: bool = false;
        const KEYS: &'static [&'static str] = &["n", "tags"];

        fn __load(reader: &mut Reader<'_>) -> Result<Self, TypedError> {
            Ok(Two {
                n: reader.required("n")?,
                tags: reader.or_else("tags", BTreeMap::new),
            })
        }

        fn __store(&self, writer: &mut Writer<'_>) {
            writer.field("n", &self.n);
            writer.field("tags", &self.tags);
        }
    }

    fn data(value: Value) -> Data {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn reader_takes_values_defaults_and_reports_missing() {
        let d = data(json!({ "n": 3, "tags": "not a map" }));
        let two = Two::__load(&mut Reader::new::<Two>(&d)).expect("loads");
        assert_eq!(
            two,
            Two {
                n: 3,
                tags: BTreeMap::new()
            }
        );
        let d = data(json!({ "tags": {} }));
        assert!(matches!(
            Two::__load(&mut Reader::new::<Two>(&d)),
            Err(TypedError::Missing { key: "n", .. })
        ));
        let d = data(json!({ "n": "card=4111 1111 1111 1111" }));
        let err = Two::__load(&mut Reader::new::<Two>(&d)).expect_err("a string is no u32");
        assert!(matches!(err, TypedError::Invalid { key: "n", .. }));
        assert!(!err.to_string().contains("4111"), "{err}");
    }

    #[test]
    fn only_fields_whose_json_changed_are_changes() {
        let mut two = Two {
            n: 1,
            tags: BTreeMap::new(),
        };
        let base = Baseline::of(&two);
        assert!(changes(&two, &base).0.is_empty());
        two.tags.insert("a".into(), 0.1);
        let (changed, next) = changes(&two, &base);
        assert_eq!(changed, [("tags", json!({ "a": 0.1 }))]);
        assert!(
            changes(&two, &next).0.is_empty(),
            "compared with what was written"
        );
        two.n = 2;
        two.n = 1;
        assert!(changes(&two, &next).0.is_empty(), "a restored value is no change");
    }

    #[test]
    fn an_unknown_baseline_makes_every_field_a_change() {
        let two = Two {
            n: 1,
            tags: BTreeMap::new(),
        };
        let (changed, _) = changes(&two, &Baseline::unknown());
        assert_eq!(changed, [("n", json!(1)), ("tags", json!({}))]);
    }

    #[test]
    fn a_field_that_does_not_serialize_is_never_a_change() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let mut base = Baseline::default();
        base.push("bad", &Bad);
        base.push("ok", &1);
        assert_eq!(base.field(0), None);
        assert_eq!(base.field(1), Some(&b"1"[..]));
    }
}
