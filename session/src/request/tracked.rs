//! The session's data as one request changes it: for every key changed, its
//! value before the change and who changed it, so that a save hands the
//! store only the keys that changed and only those their writer wants saved.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::record::Data;

/// Who changed a key, which decides whether the change is saved without a
/// `save()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saver {
    /// Saved at the end of the request with no call: the layer's `auto`, or
    /// a `#[session(auto)]` struct.
    Auto,
    /// Saved only if `save()` or `persist()` is called on the session (or
    /// any view of it). `Some` names the typed struct that wrote it.
    Explicit(Option<&'static str>),
}

/// A key changed during the request.
#[derive(Debug, Clone)]
struct Pending {
    /// The key's value the store holds (as far as this request knows).
    original: Option<Value>,
    /// The last writer.
    saver: Saver,
}

/// What a save writes: keys set with their values, keys removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Diff {
    pub(crate) set: Data,
    pub(crate) removed: Vec<String>,
}

impl Diff {
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

/// The data and its changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracked {
    data: Data,
    pending: BTreeMap<String, Pending>,
}

impl Tracked {
    /// Data as loaded: nothing changed yet.
    pub(crate) fn new(data: Data) -> Self {
        Tracked {
            data,
            pending: BTreeMap::new(),
        }
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    fn track(&mut self, key: &str, saver: Saver) {
        match self.pending.get_mut(key) {
            Some(pending) => pending.saver = saver,
            None => {
                let original = self.data.get(key).cloned();
                self.pending.insert(key.to_owned(), Pending { original, saver });
            }
        }
    }

    pub(crate) fn set(&mut self, key: String, value: Value, saver: Saver) {
        if self.data.get(&key) == Some(&value) {
            return;
        }
        self.track(&key, saver);
        self.data.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: &str, saver: Saver) -> Option<Value> {
        if !self.data.contains_key(key) {
            return None;
        }
        self.track(key, saver);
        self.data.remove(key)
    }

    pub(crate) fn clear(&mut self, saver: Saver) {
        let keys: Vec<String> = self.data.keys().cloned().collect();
        for key in &keys {
            self.track(key, saver);
        }
        self.data.clear();
    }

    /// The changed keys (value now differs from the original).
    fn changed(&self) -> impl Iterator<Item = (&String, &Pending)> {
        self.pending
            .iter()
            .filter(|(key, pending)| self.data.get(key.as_str()) != pending.original.as_ref())
    }

    pub(crate) fn is_modified(&self) -> bool {
        self.changed().next().is_some()
    }

    /// What a save writes: every change if `all` (a save was asked for),
    /// else only the changes whose writer is [`Saver::Auto`].
    pub(crate) fn diff(&self, all: bool) -> Diff {
        let mut diff = Diff::default();
        for (key, pending) in self.changed() {
            if !all && pending.saver != Saver::Auto {
                continue;
            }
            match self.data.get(key.as_str()) {
                Some(value) => {
                    diff.set.insert(key.clone(), value.clone());
                }
                None => diff.removed.push(key.clone()),
            }
        }
        diff
    }

    /// The changes a save that is not asked for leaves out, by writer: what
    /// the end-of-request warning names.
    pub(crate) fn unsaved(&self) -> BTreeMap<Option<&'static str>, Vec<&str>> {
        let mut unsaved: BTreeMap<Option<&'static str>, Vec<&str>> = BTreeMap::new();
        for (key, pending) in self.changed() {
            if let Saver::Explicit(owner) = pending.saver {
                unsaved.entry(owner).or_default().push(key);
            }
        }
        unsaved
    }

    /// The store now holds `diff`: those keys are no longer pending (a key
    /// changed again since the diff was taken stays pending, against the
    /// value written).
    pub(crate) fn written(&mut self, diff: &Diff) {
        let written = diff
            .set
            .iter()
            .map(|(key, value)| (key, Some(value)))
            .chain(diff.removed.iter().map(|key| (key, None)));
        for (key, value) in written {
            let now = self.data.get(key.as_str());
            if now == value {
                self.pending.remove(key.as_str());
            } else if let Some(pending) = self.pending.get_mut(key.as_str()) {
                pending.original = value.cloned();
            }
        }
    }

    /// The store no longer holds a record for the session (an emptied
    /// session was deleted or dropped by a cycle): every key's stored value
    /// is now "absent", so a key set afterwards is a change to save, even
    /// back to the value the dropped record held.
    pub(crate) fn emptied(&mut self) {
        let data = &self.data;
        self.pending.retain(|key, pending| {
            pending.original = None;
            data.contains_key(key.as_str())
        });
    }

    /// Takes the keys with `prefix` out of a session that has no record
    /// in a store to take them from (a new session, or a client-side one):
    /// they are removed from the data as a change by [`Saver::Auto`], so a
    /// record that held them (the cookie) is rewritten without them, and a
    /// key added in this request is simply gone.
    pub(crate) fn take_local(&mut self, prefix: &str) -> Data {
        let keys: Vec<String> = self
            .data
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut taken = Data::new();
        for key in keys {
            if let Some(value) = self.remove(&key, Saver::Auto) {
                taken.insert(key, value);
            }
        }
        taken
    }

    /// The store has just taken the keys with `prefix` out of the session's
    /// record and answered `from_store`. Settles the request's view to
    /// match and answers what was taken in all:
    ///
    /// * keys the store answered, except those this request removed;
    /// * keys this request added that the store never held (original
    ///   absent), with this request's values;
    /// * a key loaded from the store that the store no longer had was taken
    ///   by another request: dropped, not answered (it is shown there).
    ///
    /// Afterwards no key with the prefix is in the data or pending: the
    /// store and the request agree there are none.
    pub(crate) fn took(&mut self, prefix: &str, from_store: Data) -> Data {
        let mut taken = Data::new();
        for (key, value) in from_store {
            let removed_here = self
                .pending
                .get(&key)
                .is_some_and(|p| p.original.is_some() && !self.data.contains_key(&key));
            if !removed_here {
                taken.insert(key, value);
            }
        }
        for (key, pending) in &self.pending {
            if key.starts_with(prefix) && pending.original.is_none() {
                if let Some(value) = self.data.get(key) {
                    taken.insert(key.clone(), value.clone());
                }
            }
        }
        self.data.retain(|key, _| !key.starts_with(prefix));
        self.pending.retain(|key, _| !key.starts_with(prefix));
        taken
    }

    /// The data as a save of `diff` leaves it in the store: changes left
    /// out of `diff` are undone (for client-side sessions, whose cookie holds
    /// the whole record).
    pub(crate) fn saved_data(&self, diff: &Diff) -> Data {
        let mut data = self.data.clone();
        for (key, pending) in self.changed() {
            if diff.set.contains_key(key.as_str()) || diff.removed.contains(key) {
                continue;
            }
            match &pending.original {
                Some(value) => {
                    data.insert(key.clone(), value.clone());
                }
                None => {
                    data.remove(key.as_str());
                }
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn loaded() -> Tracked {
        let mut data = Data::new();
        data.insert("a".into(), json!(1));
        data.insert("b".into(), json!(2));
        Tracked::new(data)
    }

    #[test]
    fn writing_the_same_value_is_no_change() {
        let mut t = loaded();
        t.set("a".into(), json!(1), Saver::Auto);
        assert!(!t.is_modified());
        t.set("a".into(), json!(5), Saver::Auto);
        t.set("a".into(), json!(1), Saver::Auto);
        assert!(!t.is_modified(), "restored");
        assert_eq!(t.remove("zz", Saver::Auto), None);
        assert!(!t.is_modified());
    }

    #[test]
    fn auto_changes_are_saved_alone_explicit_ones_on_request() {
        let mut t = loaded();
        t.set("a".into(), json!(10), Saver::Auto);
        t.remove("b", Saver::Explicit(Some("Cart")));
        t.set("c".into(), json!(3), Saver::Explicit(None));
        let auto = t.diff(false);
        assert_eq!(auto.set, json!({"a": 10}).as_object().unwrap().clone());
        assert!(auto.removed.is_empty());
        let all = t.diff(true);
        assert_eq!(all.set.len(), 2);
        assert_eq!(all.removed, ["b"]);
        let unsaved = t.unsaved();
        assert_eq!(unsaved[&Some("Cart")], ["b"]);
        assert_eq!(unsaved[&None], ["c"]);
    }

    #[test]
    fn the_last_writer_decides() {
        let mut t = loaded();
        t.set("a".into(), json!(10), Saver::Explicit(Some("Cart")));
        t.set("a".into(), json!(11), Saver::Auto);
        assert_eq!(t.diff(false).set.len(), 1);
        assert!(t.unsaved().is_empty());
    }

    #[test]
    fn written_keys_stop_being_pending() {
        let mut t = loaded();
        t.set("a".into(), json!(10), Saver::Auto);
        t.clear(Saver::Auto);
        let diff = t.diff(false);
        assert_eq!(diff.removed, ["a", "b"]);
        t.written(&diff);
        assert!(!t.is_modified());
        t.set("a".into(), json!(1), Saver::Auto);
        assert!(t.is_modified(), "1 was the value before the write, not now");
    }

    #[test]
    fn a_key_changed_after_the_diff_stays_pending() {
        let mut t = loaded();
        t.set("a".into(), json!(10), Saver::Auto);
        let diff = t.diff(false);
        t.set("a".into(), json!(11), Saver::Auto);
        t.written(&diff);
        assert_eq!(t.diff(false).set["a"], json!(11));
        t.set("a".into(), json!(10), Saver::Auto);
        assert!(!t.is_modified(), "10 is what the store holds");
    }

    #[test]
    fn after_the_record_is_dropped_its_old_values_are_changes() {
        let mut t = loaded();
        t.clear(Saver::Auto);
        t.emptied();
        assert!(!t.is_modified(), "nothing held, nothing stored");
        t.set("a".into(), json!(1), Saver::Auto);
        assert!(t.is_modified(), "1 was the dropped record's value");
        assert_eq!(t.diff(false).set["a"], json!(1));
    }

    fn flashes() -> Tracked {
        let mut data = Data::new();
        data.insert("_f.a".into(), json!("a"));
        data.insert("_f.b".into(), json!("b"));
        data.insert("user".into(), json!(1));
        Tracked::new(data)
    }

    #[test]
    fn taking_locally_removes_as_an_auto_change() {
        let mut t = flashes();
        t.set("_f.new".into(), json!("new"), Saver::Explicit(None));
        let taken = t.take_local("_f.");
        assert_eq!(
            Value::Object(taken),
            json!({"_f.a": "a", "_f.b": "b", "_f.new": "new"})
        );
        let diff = t.diff(false);
        assert_eq!(
            diff.removed,
            ["_f.a", "_f.b"],
            "loaded keys are removed without save()"
        );
        assert!(diff.set.is_empty(), "the key added here is simply gone");
        assert_eq!(Value::Object(t.data().clone()), json!({"user": 1}));
    }

    /// What the request answers and keeps after a store take, case by case.
    #[test]
    fn after_a_store_take_the_request_agrees_with_the_store() {
        struct Case {
            name: &'static str,
            /// What this request did before the take.
            before: fn(&mut Tracked),
            /// What the store answered.
            store: Value,
            want: Value,
        }
        let cases = [
            Case {
                name: "the store had what was loaded",
                before: |_| {},
                store: json!({"_f.a": "a", "_f.b": "b"}),
                want: json!({"_f.a": "a", "_f.b": "b"}),
            },
            Case {
                name: "another request took one, and added one",
                before: |_| {},
                store: json!({"_f.b": "b", "_f.c": "c"}),
                want: json!({"_f.b": "b", "_f.c": "c"}),
            },
            Case {
                name: "added here and not yet saved",
                before: |t| t.set("_f.new".into(), json!("new"), Saver::Auto),
                store: json!({"_f.a": "a"}),
                want: json!({"_f.a": "a", "_f.new": "new"}),
            },
            Case {
                name: "removed here before the take",
                before: |t| {
                    t.remove("_f.a", Saver::Auto);
                },
                store: json!({"_f.a": "a", "_f.b": "b"}),
                want: json!({"_f.b": "b"}),
            },
        ];
        for case in cases {
            let mut t = flashes();
            (case.before)(&mut t);
            let Value::Object(store) = case.store else {
                unreachable!()
            };
            let taken = t.took("_f.", store);
            assert_eq!(Value::Object(taken), case.want, "{}", case.name);
            assert_eq!(
                Value::Object(t.data().clone()),
                json!({"user": 1}),
                "{}",
                case.name
            );
            assert!(t.diff(true).is_empty(), "{}: nothing left to write", case.name);
        }
    }

    #[test]
    fn saved_data_leaves_out_what_is_not_saved() {
        let mut t = loaded();
        t.set("a".into(), json!(10), Saver::Auto);
        t.remove("b", Saver::Explicit(None));
        t.set("c".into(), json!(3), Saver::Explicit(None));
        let saved = t.saved_data(&t.diff(false));
        assert_eq!(serde_json::Value::Object(saved), json!({"a": 10, "b": 2}));
    }
}
