//! Deciding whether a value's JSON form equals a stored `serde_json::Value`
//! without building that form.
//!
//! [`serializes_to`] drives the value's `Serialize` impl through a
//! serializer that walks the expected `Value` alongside, mirroring
//! `serde_json::value::Serializer` (the serializer behind
//! `serde_json::to_value`) call for call, and stops at the first difference.
//! Numbers are compared as `serde_json::Number`s built exactly as
//! `to_value` builds them, so the answer follows `Number`'s equality in
//! every feature configuration of `serde_json`.

use std::fmt::{self, Display, Write as _};

use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

/// Whether `serde_json::to_value(value)` would equal `expected`, decided
/// without building the value (no allocation for the common scalar/string/seq/struct/map cases).
/// Conservative: may answer `false` for equal values in exotic cases (then the caller just writes the field), must NEVER answer `true` when they differ.
///
/// The exotic cases answered `false`: maps with floating-point keys,
/// `serde_json`'s private number and raw-value tokens (the
/// `arbitrary_precision` and `raw_value` features), a map that serializes
/// the same key twice, and anything `to_value` itself rejects.
pub(crate) fn serializes_to<T: Serialize + ?Sized>(value: &T, expected: &Value) -> bool {
    value.serialize(Walker { expected }).is_ok()
}

/// The walk's only error: the value differs from the expected one, or the
/// walk gave up (or the value's own `Serialize` impl failed).
#[derive(Debug)]
struct Differs;

impl Display for Differs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value differs from the expected JSON")
    }
}

impl std::error::Error for Differs {}

impl ser::Error for Differs {
    fn custom<M: Display>(_msg: M) -> Self {
        Differs
    }
}

type Walked = Result<(), Differs>;

fn ensure(same: bool) -> Walked {
    if same {
        Ok(())
    } else {
        Err(Differs)
    }
}

/// Struct names `serde_json::value::Serializer` treats specially when its
/// `arbitrary_precision` or `raw_value` feature is on.
const PRIVATE_TOKEN_PREFIX: &str = "$serde_json::private::";

/// The single entry of `{variant: ...}`, as `to_value` builds for newtype,
/// tuple and struct variants.
fn variant_body<'a>(expected: &'a Value, variant: &str) -> Result<&'a Value, Differs> {
    match expected {
        Value::Object(map) if map.len() == 1 => map.get(variant).ok_or(Differs),
        _ => Err(Differs),
    }
}

fn as_array(expected: &Value) -> Result<&[Value], Differs> {
    match expected {
        Value::Array(items) => Ok(items),
        _ => Err(Differs),
    }
}

fn as_object(expected: &Value) -> Result<&Map<String, Value>, Differs> {
    match expected {
        Value::Object(map) => Ok(map),
        _ => Err(Differs),
    }
}

/// Compares a value against `expected`; the counterpart of
/// `serde_json::value::Serializer`.
struct Walker<'a> {
    expected: &'a Value,
}

impl<'a> Walker<'a> {
    fn number(&self, n: Number) -> Walked {
        ensure(matches!(self.expected, Value::Number(e) if *e == n))
    }

    fn string(&self, s: &str) -> Walked {
        ensure(matches!(self.expected, Value::String(e) if e == s))
    }

    fn null(&self) -> Walked {
        ensure(self.expected.is_null())
    }

    fn seq(&self, len: Option<usize>) -> Result<SeqWalker<'a>, Differs> {
        SeqWalker::new(as_array(self.expected)?, len)
    }
}

impl<'a> ser::Serializer for Walker<'a> {
    type Ok = ();
    type Error = Differs;

    type SerializeSeq = SeqWalker<'a>;
    type SerializeTuple = SeqWalker<'a>;
    type SerializeTupleStruct = SeqWalker<'a>;
    type SerializeTupleVariant = SeqWalker<'a>;
    type SerializeMap = MapWalker<'a>;
    type SerializeStruct = MapWalker<'a>;
    type SerializeStructVariant = MapWalker<'a>;

    fn serialize_bool(self, v: bool) -> Walked {
        ensure(matches!(self.expected, Value::Bool(e) if *e == v))
    }

    fn serialize_i8(self, v: i8) -> Walked {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i16(self, v: i16) -> Walked {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i32(self, v: i32) -> Walked {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i64(self, v: i64) -> Walked {
        self.number(Number::from(v))
    }

    fn serialize_i128(self, v: i128) -> Walked {
        // `Number::from_i128` follows `to_value`: `None` exactly where
        // `to_value` fails (out of the i64/u64 range without
        // `arbitrary_precision`).
        self.number(Number::from_i128(v).ok_or(Differs)?)
    }

    fn serialize_u8(self, v: u8) -> Walked {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u16(self, v: u16) -> Walked {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u32(self, v: u32) -> Walked {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u64(self, v: u64) -> Walked {
        self.number(Number::from(v))
    }

    fn serialize_u128(self, v: u128) -> Walked {
        self.number(Number::from_u128(v).ok_or(Differs)?)
    }

    fn serialize_f32(self, v: f32) -> Walked {
        // `Number::from_f32` is private; `Value::from(f32)` is what
        // `to_value` uses (`Null` for NaN and infinities). Without
        // `arbitrary_precision` it does not allocate.
        match Value::from(v) {
            Value::Number(n) => self.number(n),
            _ => self.null(),
        }
    }

    fn serialize_f64(self, v: f64) -> Walked {
        match Number::from_f64(v) {
            Some(n) => self.number(n),
            None => self.null(),
        }
    }

    fn serialize_char(self, v: char) -> Walked {
        self.string(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Walked {
        self.string(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Walked {
        let items = as_array(self.expected)?;
        ensure(
            items.len() == v.len()
                && items
                    .iter()
                    .zip(v)
                    .all(|(e, &b)| matches!(e, Value::Number(e) if *e == Number::from(b))),
        )
    }

    fn serialize_none(self) -> Walked {
        self.null()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Walked {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Walked {
        self.null()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Walked {
        self.null()
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Walked {
        self.string(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Walked {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Walked {
        value.serialize(Walker {
            expected: variant_body(self.expected, variant)?,
        })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqWalker<'a>, Differs> {
        self.seq(len)
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqWalker<'a>, Differs> {
        self.seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqWalker<'a>, Differs> {
        self.seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqWalker<'a>, Differs> {
        SeqWalker::new(as_array(variant_body(self.expected, variant)?)?, Some(len))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapWalker<'a>, Differs> {
        Ok(MapWalker::new(as_object(self.expected)?))
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<MapWalker<'a>, Differs> {
        // `serde_json::Number` (with `arbitrary_precision`) and `RawValue`
        // (with `raw_value`) serialize as structs with these names, which
        // `to_value` parses rather than maps: give up on them.
        if name.starts_with(PRIVATE_TOKEN_PREFIX) {
            return Err(Differs);
        }
        Ok(MapWalker::new(as_object(self.expected)?))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<MapWalker<'a>, Differs> {
        Ok(MapWalker::new(as_object(variant_body(self.expected, variant)?)?))
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Walked {
        let Value::String(expected) = self.expected else {
            return Err(Differs);
        };
        let mut rest = StripPrefix(expected);
        write!(rest, "{value}").map_err(|_| Differs)?;
        ensure(rest.0.is_empty())
    }
}

/// A `fmt::Write` that consumes its string as the output matches it, and
/// fails at the first byte that does not.
struct StripPrefix<'a>(&'a str);

impl fmt::Write for StripPrefix<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let rest = self.0.strip_prefix(s).ok_or(fmt::Error)?;
        self.0 = rest;
        Ok(())
    }
}

/// Walks an expected array: sequences, tuples, tuple structs and (inside
/// their `{variant: [...]}`) tuple variants.
struct SeqWalker<'a> {
    items: std::slice::Iter<'a, Value>,
}

impl<'a> SeqWalker<'a> {
    fn new(items: &'a [Value], len: Option<usize>) -> Result<Self, Differs> {
        // `to_value` ignores the length hint; a hint that disagrees with
        // the expected length is only a shortcut (at worst a conservative
        // `false` for a `Serialize` impl whose hint is wrong).
        if len.is_some_and(|len| len != items.len()) {
            return Err(Differs);
        }
        Ok(SeqWalker { items: items.iter() })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        let expected = self.items.next().ok_or(Differs)?;
        value.serialize(Walker { expected })
    }

    fn finish(self) -> Walked {
        ensure(self.items.len() == 0)
    }
}

impl ser::SerializeSeq for SeqWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        self.element(value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        self.element(value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        self.element(value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for SeqWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        self.element(value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

/// How many matched entries a map walk remembers without allocating.
const INLINE_SEEN: usize = 16;

/// Walks an expected object: maps, structs and (inside their
/// `{variant: {...}}`) struct variants.
///
/// Every serialized key must be in the object. `to_value` keeps the last of
/// a repeated key, so counting serialized keys is only sound if no key
/// repeats: each matched entry's address is recorded and checked for
/// repeats at the end (inline for small maps, in one `Vec` beyond that).
struct MapWalker<'a> {
    map: &'a Map<String, Value>,
    /// The entry `serialize_key` found, for `serialize_value`.
    pending: Option<&'a Value>,
    seen: [usize; INLINE_SEEN],
    count: usize,
    spill: Vec<usize>,
}

impl<'a> MapWalker<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        MapWalker {
            map,
            pending: None,
            seen: [0; INLINE_SEEN],
            count: 0,
            spill: Vec::new(),
        }
    }

    /// Records a matched entry.
    fn matched(&mut self, entry: &'a Value) -> Result<&'a Value, Differs> {
        // More keys than the object has: some key repeats or is missing.
        if self.count == self.map.len() {
            return Err(Differs);
        }
        let addr = std::ptr::from_ref(entry) as usize;
        if self.count < INLINE_SEEN {
            self.seen[self.count] = addr;
        } else {
            if self.spill.is_empty() {
                self.spill.reserve(self.map.len());
                self.spill.extend_from_slice(&self.seen);
            }
            self.spill.push(addr);
        }
        self.count += 1;
        Ok(entry)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Walked {
        let entry = self.map.get(key).ok_or(Differs)?;
        let expected = self.matched(entry)?;
        value.serialize(Walker { expected })
    }

    fn finish(mut self) -> Walked {
        if self.pending.is_some() || self.count != self.map.len() {
            return Err(Differs);
        }
        let seen = if self.spill.is_empty() {
            &mut self.seen[..self.count]
        } else {
            &mut self.spill[..]
        };
        seen.sort_unstable();
        ensure(seen.windows(2).all(|pair| pair[0] != pair[1]))
    }
}

impl ser::SerializeMap for MapWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Walked {
        let entry = key.serialize(KeyLookup { map: self.map })?;
        self.pending = Some(self.matched(entry)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Walked {
        let expected = self.pending.take().ok_or(Differs)?;
        value.serialize(Walker { expected })
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

impl ser::SerializeStruct for MapWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Walked {
        self.field(key, value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapWalker<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Walked {
        self.field(key, value)
    }

    fn end(self) -> Walked {
        self.finish()
    }
}

/// A small stack buffer for formatting map keys; fails when full.
struct KeyBuf {
    bytes: [u8; 64],
    len: usize,
}

impl KeyBuf {
    fn new() -> Self {
        KeyBuf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> Result<&str, Differs> {
        // Only whole `&str`s are ever copied in, so this does not fail.
        std::str::from_utf8(&self.bytes[..self.len]).map_err(|_| Differs)
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Finds the expected entry for a map key; the counterpart of
/// `serde_json`'s `MapKeySerializer`, which turns strings, chars, bools,
/// integers, unit variants and newtypes of these into string keys. Float
/// keys (formatted by `serde_json`'s own float printer) are given up on.
struct KeyLookup<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> KeyLookup<'a> {
    fn find(&self, key: &str) -> Result<&'a Value, Differs> {
        self.map.get(key).ok_or(Differs)
    }

    /// Integers: `serde_json` formats them with `itoa`, which writes what
    /// `Display` writes.
    fn display(&self, key: impl Display) -> Result<&'a Value, Differs> {
        let mut buf = KeyBuf::new();
        write!(buf, "{key}").map_err(|_| Differs)?;
        self.find(buf.as_str()?)
    }
}

impl<'a> ser::Serializer for KeyLookup<'a> {
    type Ok = &'a Value;
    type Error = Differs;

    type SerializeSeq = ser::Impossible<&'a Value, Differs>;
    type SerializeTuple = ser::Impossible<&'a Value, Differs>;
    type SerializeTupleStruct = ser::Impossible<&'a Value, Differs>;
    type SerializeTupleVariant = ser::Impossible<&'a Value, Differs>;
    type SerializeMap = ser::Impossible<&'a Value, Differs>;
    type SerializeStruct = ser::Impossible<&'a Value, Differs>;
    type SerializeStructVariant = ser::Impossible<&'a Value, Differs>;

    fn serialize_bool(self, v: bool) -> Result<&'a Value, Differs> {
        self.find(if v { "true" } else { "false" })
    }

    fn serialize_i8(self, v: i8) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_i16(self, v: i16) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_i32(self, v: i32) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_i64(self, v: i64) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_i128(self, v: i128) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_u8(self, v: u8) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_u16(self, v: u16) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_u32(self, v: u32) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_u64(self, v: u64) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_u128(self, v: u128) -> Result<&'a Value, Differs> {
        self.display(v)
    }

    fn serialize_f32(self, _v: f32) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_f64(self, _v: f64) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_char(self, v: char) -> Result<&'a Value, Differs> {
        self.find(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<&'a Value, Differs> {
        self.find(v)
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_none(self) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_unit(self) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<&'a Value, Differs> {
        self.find(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<&'a Value, Differs> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<&'a Value, Differs> {
        Err(Differs)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Differs> {
        Err(Differs)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Differs> {
        Err(Differs)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Differs> {
        Err(Differs)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Differs> {
        Err(Differs)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Differs> {
        Err(Differs)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Differs> {
        Err(Differs)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Differs> {
        Err(Differs)
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<&'a Value, Differs> {
        let mut buf = KeyBuf::new();
        if write!(buf, "{value}").is_ok() {
            return self.find(buf.as_str()?);
        }
        // Too long for the buffer (or `Display` failed, where `to_value`
        // panics).
        let mut key = String::new();
        write!(key, "{value}").map_err(|_| Differs)?;
        self.find(&key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;

    use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::serializes_to;

    /// Values that differ from `v` by one small change somewhere (at most
    /// `depth` levels down): a number, a string's character, a key, an
    /// element, null/bool, or the type of a node.
    fn mutations(v: &Value, depth: usize) -> Vec<Value> {
        let mut out = vec![json!([v.clone()]), json!({ "k": v.clone() })];
        match v {
            Value::Null => out.extend([json!(false), json!(0), json!(""), json!([]), json!({})]),
            Value::Bool(b) => out.extend([Value::Bool(!b), Value::Null, json!(u8::from(*b))]),
            Value::Number(n) => {
                out.push(Value::Null);
                out.push(json!(n.to_string()));
                if let Some(u) = n.as_u64() {
                    out.extend([
                        json!(u.wrapping_add(1)),
                        json!(u.wrapping_sub(1)),
                        json!(u as f64),
                    ]);
                }
                if let Some(i) = n.as_i64() {
                    out.extend([
                        json!(i.wrapping_add(1)),
                        json!(i.wrapping_sub(1)),
                        json!(i as f64),
                    ]);
                    out.push(json!(-i128::from(i) as f64));
                }
                if let Some(f) = n.as_f64() {
                    out.extend([
                        json!(f * 2.0 + 1.0),
                        json!(-f - 1.0),
                        json!(f64::from_bits(f.to_bits() + 1)),
                    ]);
                    if f.is_finite() && f == f.trunc() && f.abs() < 1e18 {
                        out.push(json!(f as i64));
                    }
                }
            }
            Value::String(s) => {
                out.push(Value::Null);
                out.push(json!(format!("{s}x")));
                out.push(json!(format!("x{s}")));
                if let Some(last) = s.chars().last() {
                    let cut = &s[..s.len() - last.len_utf8()];
                    out.push(json!(cut));
                    let other = if last == 'z' { 'y' } else { 'z' };
                    out.push(json!(format!("{cut}{other}")));
                }
            }
            Value::Array(items) => {
                out.push(Value::Null);
                let mut longer = items.clone();
                longer.push(Value::Null);
                out.push(Value::Array(longer));
                if !items.is_empty() {
                    out.push(Value::Array(items[1..].to_vec()));
                    out.push(Value::Array(items[..items.len() - 1].to_vec()));
                    let mut reversed = items.clone();
                    reversed.reverse();
                    out.push(Value::Array(reversed));
                    let mut doubled = items.clone();
                    doubled.push(items[items.len() - 1].clone());
                    out.push(Value::Array(doubled));
                }
                if depth > 0 {
                    for (i, item) in items.iter().enumerate() {
                        for m in mutations(item, depth - 1) {
                            let mut changed = items.clone();
                            changed[i] = m;
                            out.push(Value::Array(changed));
                        }
                    }
                }
            }
            Value::Object(map) => {
                out.push(Value::Null);
                out.push(Value::Array(map.values().cloned().collect()));
                let mut extra = map.clone();
                extra.insert("__extra".to_owned(), Value::Null);
                out.push(Value::Object(extra));
                for (key, value) in map {
                    let mut fewer = map.clone();
                    fewer.remove(key);
                    out.push(Value::Object(fewer.clone()));
                    for renamed in [format!("{key}_"), format!("0{key}"), key.to_uppercase()] {
                        let mut moved = fewer.clone();
                        moved.insert(renamed, value.clone());
                        out.push(Value::Object(moved));
                    }
                    if depth > 0 {
                        for m in mutations(value, depth - 1) {
                            let mut changed = map.clone();
                            changed.insert(key.clone(), m);
                            out.push(Value::Object(changed));
                        }
                    }
                }
            }
        }
        out.retain(|m| m != v);
        out
    }

    /// `serializes_to` gives exactly `to_value(v) == expected`.
    #[track_caller]
    fn agrees<T: Serialize + ?Sized + Debug>(v: &T, expected: &Value) {
        let truth = serde_json::to_value(v).ok().as_ref() == Some(expected);
        assert_eq!(serializes_to(v, expected), truth, "{v:?} against {expected}");
    }

    /// `serializes_to` never says `true` where `to_value(v) != expected`.
    #[track_caller]
    fn sound<T: Serialize + ?Sized + Debug>(v: &T, expected: &Value) {
        if serializes_to(v, expected) {
            let actual = serde_json::to_value(v).ok();
            assert_eq!(actual.as_ref(), Some(expected), "{v:?}: false `true`");
        }
    }

    /// A common case: recognised as its own JSON, and no mutation of that
    /// JSON is.
    #[track_caller]
    fn check<T: Serialize + ?Sized + Debug>(v: &T) {
        let json = serde_json::to_value(v).expect("serializable");
        assert!(serializes_to(v, &json), "{v:?} not recognised as {json}");
        // Also through a JSON text round trip (how a stored session is read).
        let reparsed: Value = serde_json::from_str(&json.to_string()).expect("valid JSON");
        agrees(v, &reparsed);
        for m in mutations(&json, 3) {
            assert!(!serializes_to(v, &m), "{v:?} matched mutated {m}");
        }
    }

    /// An exotic case: only soundness is required.
    #[track_caller]
    fn check_sound<T: Serialize + ?Sized + Debug>(v: &T) {
        if let Ok(json) = serde_json::to_value(v) {
            sound(v, &json);
            for m in mutations(&json, 3) {
                sound(v, &m);
            }
        }
        for other in [
            Value::Null,
            json!({}),
            json!([]),
            json!({ "a": 2 }),
            json!([1, 2]),
        ] {
            sound(v, &other);
        }
    }

    #[derive(Serialize, Debug)]
    struct UnitStruct;

    #[derive(Serialize, Debug)]
    struct Newtype(u32);

    #[derive(Serialize, Debug)]
    struct Pair(i8, String);

    #[derive(Serialize, Debug, Default)]
    struct Inner {
        a: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<String>,
    }

    #[derive(Serialize, Debug, Default)]
    struct Flat {
        c: bool,
        #[serde(rename = "D")]
        d: Vec<u8>,
    }

    #[derive(Serialize, Debug, Default)]
    struct Outer {
        #[serde(rename = "renamed")]
        name: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
        #[serde(skip)]
        hidden: u32,
        inner: Inner,
        maybe: Option<Inner>,
        #[serde(flatten)]
        flat: Flat,
        #[serde(flatten)]
        extra: BTreeMap<String, i32>,
    }

    #[derive(Serialize, Debug)]
    enum External {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct {
            x: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            y: Option<f64>,
        },
        #[serde(rename = "other")]
        Renamed,
    }

    #[derive(Serialize, Debug)]
    #[serde(tag = "t")]
    enum Internal {
        Unit,
        Newtype(Inner),
        Map(BTreeMap<String, u8>),
        Struct { x: i64 },
    }

    #[derive(Serialize, Debug)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        Unit,
        Newtype(i32),
        Tuple(u8, u8),
        Struct { x: i64 },
    }

    #[derive(Serialize, Debug)]
    #[serde(untagged)]
    enum Untagged {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct { x: i64 },
        Text(String),
    }

    #[derive(Serialize, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum KeyKind {
        Alpha,
        #[serde(rename = "b")]
        Beta,
    }

    #[derive(Serialize, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct KeyNewtype(i16);

    /// Serializes through `serialize_bytes`.
    #[derive(Debug)]
    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Serializes through `collect_str`, as a value or a map key.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Shown(i32, usize);

    impl Serialize for Shown {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("#{}{}", self.0, "=".repeat(self.1)))
        }
    }

    /// Serializes a map through `collect_map`, keys and all as given.
    #[derive(Debug)]
    struct Entries<K, V>(Vec<(K, V)>);

    impl<K: Serialize, V: Serialize> Serialize for Entries<K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    /// A sequence with no length hint (`serialize_seq(None)`).
    #[derive(Debug)]
    struct Unhinted(Vec<i32>);

    impl Serialize for Unhinted {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().filter(|_| true))
        }
    }

    /// A struct that serializes one field twice (the later wins in `to_value`).
    #[derive(Debug)]
    struct TwiceField;

    impl Serialize for TwiceField {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("TwiceField", 3)?;
            st.serialize_field("a", &1)?;
            st.serialize_field("b", &2)?;
            st.serialize_field("a", &1)?;
            st.end()
        }
    }

    /// A sequence whose length hint is wrong.
    #[derive(Debug)]
    struct WrongHint;

    impl Serialize for WrongHint {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(5))?;
            seq.serialize_element(&1)?;
            seq.serialize_element(&2)?;
            seq.end()
        }
    }

    /// A map that ends after a key with no value.
    #[derive(Debug)]
    struct DanglingKey;

    impl Serialize for DanglingKey {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("a", &1)?;
            map.serialize_key("b")?;
            map.end()
        }
    }

    /// A value whose `Serialize` impl fails.
    #[derive(Debug)]
    struct Fails;

    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }

    #[test]
    fn integers() {
        check(&0u8);
        check(&u8::MAX);
        check(&i8::MIN);
        check(&-1i8);
        check(&i16::MIN);
        check(&u16::MAX);
        check(&i32::MIN);
        check(&u32::MAX);
        check(&0i64);
        check(&-1i64);
        check(&i64::MIN);
        check(&i64::MAX);
        check(&0u64);
        check(&u64::MAX);
        check(&1usize);
        check(&-7isize);
        check(&-5i128);
        check(&0i128);
        check(&i128::from(u64::MAX));
        check(&i128::from(i64::MIN));
        check(&u128::from(u64::MAX));
        // Integers are not floats, and the sign does not matter for
        // equal values (`0i64` is a `PosInt`, like `0u64`).
        agrees(&1u64, &json!(1.0));
        agrees(&1i64, &json!(1u64));
        agrees(&-1i64, &json!(-1.0));
        agrees(&0i8, &json!(0u64));
        agrees(&5i128, &json!(5u8));
    }

    #[test]
    fn integers_to_value_rejects() {
        for v in [
            i128::MAX,
            i128::MIN,
            i128::from(u64::MAX) + 1,
            i128::from(i64::MIN) - 1,
        ] {
            assert!(serde_json::to_value(v).is_err());
            check_sound(&v);
            assert!(!serializes_to(&v, &json!(null)));
        }
        check_sound(&u128::MAX);
        check_sound(&(u128::from(u64::MAX) + 1));
    }

    #[test]
    fn floats() {
        for f in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e300,
            -1e-300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            9007199254740993.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            check(&f);
        }
        for f in [
            0.0f32,
            -0.0,
            0.1,
            3.5,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::NAN,
            f32::INFINITY,
        ] {
            check(&f);
        }
        // NaN and infinities are null, as in `to_value`.
        assert!(serializes_to(&f64::NAN, &Value::Null));
        assert!(serializes_to(&f32::NEG_INFINITY, &Value::Null));
        // `Number` equality: -0.0 == 0.0, floats never equal integers.
        agrees(&-0.0f64, &json!(0.0));
        agrees(&0.0f64, &json!(0));
        agrees(&1.0f64, &json!(1));
        agrees(&1e300f64, &json!(1e300));
        // f32 is widened, not rounded through its decimal form.
        agrees(&0.1f32, &json!(0.1f64));
        agrees(&0.1f32, &json!(f64::from(0.1f32)));
        agrees(&f32::MAX, &json!(f64::from(f32::MAX)));
        // Stored values parsed from JSON text (with `float_roundtrip`).
        for text in [
            "0.1",
            "1e300",
            "-0.0",
            "0.30000000000000004",
            "1.0",
            "1",
            "123456789012345678901234567890",
        ] {
            let parsed: Value = serde_json::from_str(text).expect("number");
            for f in [0.1, 1e300, -0.0, 0.1 + 0.2, 1.0, 1.2345678901234568e29] {
                agrees(&f, &parsed);
            }
        }
    }

    #[test]
    fn bools_units_and_options() {
        check(&true);
        check(&false);
        check(&());
        check(&UnitStruct);
        check(&None::<i32>);
        check(&Some(5));
        check(&Some(Some(None::<u8>)));
        check(&Some("text"));
        agrees(&None::<u8>, &json!(false));
        agrees(&(), &json!([]));
        agrees(&false, &json!(0));
    }

    #[test]
    fn strings_and_chars() {
        for s in [
            "",
            "plain",
            "ünïcödé 😀 中文",
            "quote \" backslash \\ slash / newline \n tab \t nul \0",
            "\u{7f}\u{1f}\u{2028}\u{fffd}",
            "a much longer string that goes on for a while, well beyond any short-string inline size",
        ] {
            check(s);
            check(&s.to_owned());
            check(&std::borrow::Cow::Borrowed(s));
        }
        for c in ['a', 'é', '😀', '\n', '\0', '"', '\u{10ffff}'] {
            check(&c);
        }
        agrees(&'a', &json!("ab"));
        agrees(&'a', &json!(97));
        agrees("1", &json!(1));
    }

    #[test]
    fn sequences_tuples_and_bytes() {
        check(&Vec::<u8>::new());
        check(&vec![1u32, 2, 3]);
        check(&vec![
            vec!["a".to_owned()],
            vec![],
            vec!["b".to_owned(), "c".to_owned()],
        ]);
        check(&[1u8, 2, 3]);
        check(&[0i32; 0]);
        check(&(1,));
        check(&(1, "a", true));
        check(&((1, 2), [3, 4], (), Some(-1)));
        check(&Pair(-3, "p".to_owned()));
        check(&Newtype(7));
        check(&std::collections::VecDeque::from([1, 2]));
        check(&std::collections::BTreeSet::from(["x", "y"]));
        let slice: &[u8] = &[0, 1, 255];
        check(slice);
        check(&Bytes(&[0, 1, 255]));
        check(&Bytes(&[]));
        check(&Unhinted(vec![]));
        check(&Unhinted(vec![1, 2, 3]));
        agrees(&Unhinted(vec![1, 2]), &json!([1, 2, 3]));
        agrees(&Unhinted(vec![1, 2]), &json!([1]));
        // Bytes are an array of numbers, as a slice is.
        assert!(serializes_to(&Bytes(&[1, 2]), &json!([1, 2])));
        agrees(&Bytes(&[1, 2]), &json!([1, 2.0]));
        agrees(&Bytes(&[1, 2]), &json!([1, 2, 3]));
        agrees(&Bytes(&[1, 2]), &json!("\u{1}\u{2}"));
        agrees(&vec![1, 2], &json!([1]));
        agrees(&vec![1], &json!([1, 2]));
    }

    #[test]
    fn structs() {
        check(&Inner { a: 1, b: None });
        check(&Inner {
            a: 1,
            b: Some("b".into()),
        });
        let mut outer = Outer {
            name: "n".into(),
            hidden: 9,
            ..Outer::default()
        };
        check(&outer);
        assert_eq!(outer.hidden, 9);
        outer.tags = vec!["t".into()];
        outer.maybe = Some(Inner {
            a: 2,
            b: Some("x".into()),
        });
        outer.flat.d = vec![4, 5];
        outer.extra.insert("e1".into(), -1);
        outer.extra.insert("e2".into(), 2);
        check(&outer);
        check(&std::time::Duration::new(5, 6));
        // A skipped field must not be expected; an extra key is a difference.
        agrees(&Inner { a: 1, b: None }, &json!({ "a": 1, "b": null }));
        agrees(&Inner { a: 1, b: None }, &json!({ "a": 1 }));
        agrees(&Inner { a: 1, b: None }, &json!({}));
        agrees(&Inner { a: 1, b: None }, &json!([1]));
    }

    #[test]
    fn enums() {
        check(&External::Unit);
        check(&External::Renamed);
        check(&External::Newtype(-4));
        check(&External::Tuple(1, "t".into()));
        check(&External::Struct { x: 1, y: None });
        check(&External::Struct { x: 1, y: Some(0.5) });
        check(&vec![External::Unit, External::Newtype(1)]);
        check(&Internal::Unit);
        check(&Internal::Newtype(Inner { a: 3, b: None }));
        check(&Internal::Map(BTreeMap::from([("m".to_owned(), 1)])));
        check(&Internal::Struct { x: -9 });
        check(&Adjacent::Unit);
        check(&Adjacent::Newtype(1));
        check(&Adjacent::Tuple(1, 2));
        check(&Adjacent::Struct { x: 2 });
        check(&Untagged::Unit);
        check(&Untagged::Newtype(1));
        check(&Untagged::Tuple(1, "u".into()));
        check(&Untagged::Struct { x: 2 });
        check(&Untagged::Text("s".into()));
        check(&Ok::<u8, String>(1));
        check(&Err::<u8, String>("e".into()));
        agrees(&External::Newtype(1), &json!({ "Newtype": 1, "Other": 1 }));
        agrees(&External::Unit, &json!({ "Unit": null }));
        agrees(&External::Tuple(1, "t".into()), &json!({ "Tuple": [1] }));
        agrees(
            &External::Tuple(1, "t".into()),
            &json!({ "Tuple": [1, "t", null] }),
        );
    }

    #[test]
    fn maps() {
        check(&HashMap::<String, i32>::new());
        check(&BTreeMap::<String, i32>::new());
        check(&HashMap::from([
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("é".to_owned(), 3),
        ]));
        check(&BTreeMap::from([
            (-1i64, "neg"),
            (0, "zero"),
            (i64::MAX, "max"),
            (i64::MIN, "min"),
        ]));
        check(&HashMap::from([(0u8, true), (255, false)]));
        check(&BTreeMap::from([(true, 1u8), (false, 0)]));
        check(&BTreeMap::from([('c', 1u8), ('😀', 2)]));
        check(&BTreeMap::from([(KeyKind::Alpha, 1u8), (KeyKind::Beta, 2)]));
        check(&BTreeMap::from([(KeyNewtype(-3), 1u8), (KeyNewtype(4), 2)]));
        check(&BTreeMap::from([(i128::MIN, 1u8), (i128::MAX, 2)]));
        check(&BTreeMap::from([(u128::MAX, 1u8)]));
        check(&BTreeMap::from([(Shown(1, 0), 1u8), (Shown(2, 100), 2)]));
        check(&BTreeMap::from([(
            "k",
            BTreeMap::from([("n", vec![Some(1), None])]),
        )]));
        // Beyond the inline record of matched keys.
        let big: HashMap<String, usize> = (0..100).map(|i| (format!("key{i}"), i)).collect();
        check(&big);
        let big: BTreeMap<u32, u32> = (0..40).map(|i| (i, i * i)).collect();
        check(&big);
        agrees(&BTreeMap::from([(1, 1)]), &json!({ "01": 1 }));
        agrees(&BTreeMap::from([(1, 1)]), &json!({ "1": 1, "2": 2 }));
        agrees(&BTreeMap::from([(1, 1), (2, 2)]), &json!({ "1": 1 }));
        agrees(&BTreeMap::from([(true, 1)]), &json!({ "True": 1 }));
    }

    #[test]
    fn std_types() {
        check(&std::net::IpAddr::from([127, 0, 0, 1]));
        check(&std::net::SocketAddr::from(([10, 0, 0, 1], 8080)));
        check(&std::path::PathBuf::from("/tmp/x"));
        check(&std::num::NonZeroU32::new(3));
        check(&std::time::UNIX_EPOCH);
        check(&Box::new(5));
        check(&std::rc::Rc::new(std::cell::Cell::new(3)).get());
        check(&std::cell::RefCell::new(vec![1]));
        check(&std::marker::PhantomData::<u8>);
        check(&(1..4));
    }

    #[test]
    fn collect_str() {
        check(&Shown(42, 0));
        check(&Shown(-1, 3));
        check(&Shown(7, 200));
        agrees(&Shown(42, 0), &json!("#4"));
        agrees(&Shown(42, 0), &json!("#42="));
        agrees(&Shown(42, 0), &json!("#43"));
        agrees(&Shown(42, 0), &json!(42));
    }

    #[test]
    fn exotic_cases_are_sound() {
        // A repeated key: the later value wins in `to_value`.
        let dup = Entries(vec![("a", 1), ("a", 2)]);
        assert_eq!(serde_json::to_value(&dup).expect("map"), json!({ "a": 2 }));
        check_sound(&dup);
        for expected in [
            json!({ "a": 1 }),
            json!({ "a": 2 }),
            json!({ "a": 1, "b": 2 }),
            json!({ "a": 2, "b": 2 }),
        ] {
            assert!(!serializes_to(&dup, &expected), "{expected}");
        }
        let dup_many = Entries((0..40).chain([3]).map(|i| (i, i)).collect());
        check_sound(&dup_many);
        let mut with_extra = serde_json::to_value(&dup_many).expect("map");
        with_extra["extra"] = json!(3);
        assert!(!serializes_to(&dup_many, &with_extra));
        check_sound(&TwiceField);
        assert!(!serializes_to(&TwiceField, &json!({ "a": 1, "b": 2 })));
        // A field that collides with a flattened map's key.
        let collides = Outer {
            extra: BTreeMap::from([("renamed".to_owned(), 1)]),
            ..Outer::default()
        };
        check_sound(&collides);
        // Float keys: `to_value` formats them; answered `false`.
        let floats = Entries(vec![(1.5, 1), (-0.0, 2)]);
        check_sound(&floats);
        check_sound(&Entries(vec![(f64::NAN, 1)]));
        // Keys `to_value` rejects.
        check_sound(&Entries(vec![(None::<u8>, 1)]));
        check_sound(&Entries(vec![((1, 2), 1)]));
        check_sound(&Entries(vec![(Some("a"), 1)]));
        check_sound(&Entries(vec![((), 1)]));
        check_sound(&WrongHint);
        check_sound(&DanglingKey);
        check_sound(&Fails);
        assert!(!serializes_to(&Fails, &Value::Null));
    }

    /// A deterministic xorshift64 generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> usize {
            usize::try_from(self.next() % n).expect("small")
        }

        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64)].clone()
        }
    }

    const KEYS: [&str; 6] = ["", "a", "b", "é", "ab", "😀"];

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        let kinds = if depth == 0 { 5 } else { 7 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(rng.next() % 2 == 0),
            2 => rng.pick(&[
                json!(0),
                json!(1),
                json!(2),
                json!(-1),
                json!(-2),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(i64::MAX),
            ]),
            3 => rng.pick(&[
                json!(0.0),
                json!(-0.0),
                json!(0.5),
                json!(1.0),
                json!(-2.5),
                json!(1e300),
            ]),
            4 => Value::String(rng.pick(&KEYS).to_owned()),
            5 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
            _ => Value::Object(
                (0..rng.below(4))
                    .map(|_| (rng.pick(&KEYS).to_owned(), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_json_trees() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut equal_pairs = 0;
        for _ in 0..3000 {
            let v = random_value(&mut rng, 3);
            assert!(serializes_to(&v, &v), "{v}");
            let copy = serde_json::from_str::<Value>(&v.to_string()).expect("valid JSON");
            assert_eq!(serializes_to(&v, &copy), v == copy, "{v} against {copy}");
            for _ in 0..4 {
                let depth = rng.below(3) as u32;
                let other = random_value(&mut rng, depth);
                equal_pairs += usize::from(v == other);
                assert_eq!(serializes_to(&v, &other), v == other, "{v} against {other}");
            }
            let mutated = mutations(&v, 3);
            for _ in 0..8 {
                let m = rng.pick(&mutated);
                assert!(!serializes_to(&v, &m), "{v} matched mutated {m}");
            }
        }
        // The small domain makes chance equality happen, so that the
        // `true` side is exercised too.
        assert!(equal_pairs > 100, "{equal_pairs}");
    }

    fn random_map(rng: &mut Rng) -> BTreeMap<String, Vec<Option<i64>>> {
        (0..rng.below(4))
            .map(|_| {
                let key = rng.pick(&KEYS).to_owned();
                let items = (0..rng.below(3))
                    .map(|_| rng.pick(&[None, Some(0), Some(1), Some(-1), Some(i64::MIN)]))
                    .collect();
                (key, items)
            })
            .collect()
    }

    #[test]
    fn random_maps() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut equal_pairs = 0;
        for _ in 0..3000 {
            let m = random_map(&mut rng);
            let json = serde_json::to_value(&m).expect("map");
            assert!(serializes_to(&m, &json), "{m:?}");
            for _ in 0..4 {
                let other = serde_json::to_value(random_map(&mut rng)).expect("map");
                equal_pairs += usize::from(json == other);
                agrees(&m, &other);
            }
            for mutated in mutations(&json, 3) {
                assert!(!serializes_to(&m, &mutated), "{m:?} matched mutated {mutated}");
            }
        }
        assert!(equal_pairs > 100, "{equal_pairs}");
    }
}
