//! A property test of one request's session: a random sequence of
//! operations (untyped changes by either writer, `save`, `persist`,
//! `delete`, `invalidate`, `cycle_id`, typed views loading, changing and
//! flushing fields, another request deleting the record) run against the
//! real state, planner and a small store, and against a reference model of
//! the documented rules (the module docs of `plan`, the `Session` docs)
//! written without the planner. The store must end with the same records,
//! the browser must be told the same thing, and the handlers must see the
//! same data after every operation.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::config::Config;
use crate::id::SessionId;
use crate::record::{Data, Record};
use crate::request::plan::{self, CookieDecision, Outcome, Settled};
use crate::request::state::{Origin, State};
use crate::request::tests::{Names, Store};
use crate::request::tracked::Saver;

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

/// The keys the operations use; the typed views hold the first two.
const KEYS: [&str; 3] = ["a", "b", "c"];
const VIEW_KEYS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A cookie naming a record in the store.
    Loaded,
    /// No cookie.
    Fresh,
    /// A cookie naming no session.
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Untyped `insert`; `auto`: the writer is `Saver::Auto`.
    Insert {
        key: usize,
        value: u8,
        auto: bool,
    },
    Remove {
        key: usize,
        auto: bool,
    },
    Clear {
        auto: bool,
    },
    Save,
    /// A write now (`persist()`).
    Persist,
    Delete,
    Invalidate,
    Cycle,
    /// A typed view (of `VIEW_KEYS`) is made in slot `view`, replacing (and
    /// so flushing) the one there; `auto`: its writer is `Saver::Auto`.
    ViewLoad {
        view: usize,
        auto: bool,
    },
    ViewSet {
        view: usize,
        field: usize,
        value: Option<u8>,
    },
    ViewFlush {
        view: usize,
    },
    /// Another request deletes every record of the session meanwhile.
    Vanish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Answered,
    Failed,
    Panicked,
}

impl End {
    fn outcome(self) -> Outcome {
        match self {
            End::Answered => Outcome::Answered,
            End::Failed => Outcome::Failed,
            End::Panicked => Outcome::Panicked,
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    start: Start,
    /// The loaded record's data (for `Start::Loaded`).
    loaded: Vec<(usize, u8)>,
    ops: Vec<Op>,
    end: End,
}

/// What the browser is told, ids named by what they hold.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Keep,
    Remove,
    /// A cookie for the loaded id.
    SetLoaded,
    /// A cookie for a new id, and the record the store holds under it.
    SetNew(Option<Data>),
}

/// What a run leaves behind.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    /// The session's data after each operation (and after the end).
    seen: Vec<Data>,
    /// The record under the loaded id.
    loaded: Option<Data>,
    /// The records under other ids, sorted.
    others: Vec<Data>,
    /// `None` after a panic (whatever catches it makes the response).
    told: Option<Told>,
}

fn sorted(mut records: Vec<Data>) -> Vec<Data> {
    records.sort_by_key(|data| Value::Object(data.clone()).to_string());
    records
}

fn loaded_data(pairs: &[(usize, u8)]) -> Data {
    pairs
        .iter()
        .map(|&(key, value)| (KEYS[key].to_owned(), json!(value)))
        .collect()
}

fn saver(auto: bool, owner: Option<&'static str>) -> Saver {
    if auto {
        Saver::Auto
    } else {
        Saver::Explicit(owner)
    }
}

// ---------------------------------------------------------------------------
// The code: state, planner, settle, against the store of `tests`.

/// A typed view as `Typed::flush` handles it: each field's JSON bytes
/// compared with the bytes at load (or at the last flush).
struct RealView {
    epoch: u64,
    saver: Saver,
    fields: [Option<u8>; 2],
    baseline: [Vec<u8>; 2],
}

fn bytes(field: Option<u8>) -> Vec<u8> {
    serde_json::to_vec(&field).expect("an Option<u8> serializes")
}

impl RealView {
    fn load(state: &State, auto: bool) -> Self {
        let fields = VIEW_KEYS.map(|key| {
            state.tracked.data().get(key).and_then(|value| {
                serde_json::from_value::<Option<u8>>(value.clone()).expect("values are small numbers")
            })
        });
        RealView {
            epoch: state.epoch,
            saver: saver(auto, Some("View")),
            fields,
            baseline: fields.map(bytes),
        }
    }

    /// `Typed::flush`.
    fn flush(&mut self, state: &mut State) {
        let mut changed = Vec::new();
        for (index, field) in self.fields.iter().enumerate() {
            let now = bytes(*field);
            if now != self.baseline[index] {
                let value: Value = serde_json::from_slice(&now).expect("JSON");
                changed.push((VIEW_KEYS[index], value));
                self.baseline[index] = now;
            }
        }
        if changed.is_empty() || state.epoch != self.epoch || !state.is_live() {
            return;
        }
        for (key, value) in changed {
            state.set(key.to_owned(), value, self.saver);
        }
    }
}

/// Plans, executes and settles once (as the handle does).
fn write(state: &mut State, store: &mut Store, names: &Names, outcome: Outcome) {
    let config = Config::default();
    let plan = plan::plan(state, &config, NOW, outcome);
    let result = store.execute(&plan, names);
    assert_eq!(
        plan::settle(state, &plan, result, NOW).expect("no store error"),
        Settled::Done
    );
}

fn run_code(case: &Case) -> Observed {
    let loaded_id = SessionId::generate();
    let names = Names {
        loaded: loaded_id.store_key(),
    };
    let mut store = Store::default();
    let mut state = match case.start {
        Start::Loaded => {
            let data = loaded_data(&case.loaded);
            store.records.insert(names.loaded.clone(), data.clone());
            let record = Record {
                data,
                // A session whose cookie came back before (no confirming
                // touch due).
                created: NOW - time::Duration::days(1),
                accessed: NOW,
                expires: NOW + time::Duration::days(1),
            };
            State::loaded(loaded_id, false, record, NOW)
        }
        Start::Fresh => State::fresh(Origin::NoCookie, NOW),
        Start::Stale => State::fresh(Origin::Stale, NOW),
    };
    let mut views: [Option<RealView>; 2] = [None, None];
    let mut seen = Vec::new();
    for op in &case.ops {
        match *op {
            Op::Insert { key, value, auto } => {
                state.set(KEYS[key].to_owned(), json!(value), saver(auto, None));
            }
            Op::Remove { key, auto } => {
                state.remove(KEYS[key], saver(auto, None));
            }
            Op::Clear { auto } => state.clear(saver(auto, None)),
            Op::Save => state.request_save(),
            Op::Persist => write(&mut state, &mut store, &names, Outcome::Persist),
            Op::Delete => state.delete(),
            Op::Invalidate => state.invalidate(NOW),
            Op::Cycle => state.cycle(),
            Op::ViewLoad { view, auto } => {
                if let Some(mut old) = views[view].take() {
                    old.flush(&mut state);
                }
                views[view] = Some(RealView::load(&state, auto));
            }
            Op::ViewSet { view, field, value } => {
                if let Some(view) = &mut views[view] {
                    view.fields[field] = value;
                }
            }
            Op::ViewFlush { view } => {
                if let Some(view) = &mut views[view] {
                    view.flush(&mut state);
                }
            }
            Op::Vanish => store.records.clear(),
        }
        seen.push(state.tracked.data().clone());
    }
    // The handler returns (or unwinds): its views are dropped.
    for view in views.iter_mut().flatten() {
        view.flush(&mut state);
    }
    write(&mut state, &mut store, &names, case.end.outcome());
    seen.push(state.tracked.data().clone());
    let told = (case.end != End::Panicked).then(|| {
        match plan::cookie(&state, &Config::default(), false) {
            CookieDecision::Keep => Told::Keep,
            CookieDecision::Remove => Told::Remove,
            CookieDecision::Set(id) => {
                // Not always `state.id`: a cycle pending when the request
                // failed leaves the record (and the cookie) where it was.
                let key = id.store_key();
                if key == names.loaded {
                    Told::SetLoaded
                } else {
                    Told::SetNew(store.records.get(&key).cloned())
                }
            }
        }
    });
    let loaded = store.records.remove(&names.loaded);
    Observed {
        seen,
        loaded,
        others: sorted(store.records.into_values().collect()),
        told,
    }
}

// ---------------------------------------------------------------------------
// The model: the documented rules, without the planner.

/// A record's place in the model's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Loaded,
    New(u32),
}

struct ModelView {
    generation: u64,
    auto: bool,
    fields: [Value; 2],
    baseline: [Value; 2],
}

struct Model {
    /// The store.
    records: BTreeMap<Slot, Data>,
    offered: Start,
    /// The session's id now.
    id: Slot,
    new_ids: u32,
    /// The record this request knows of, and what it holds as far as the
    /// request knows.
    home: Option<Slot>,
    base: Data,
    /// The data the handlers see, and each changed key's last writer
    /// (`true`: auto).
    data: Data,
    writer: BTreeMap<String, bool>,
    /// `delete()` was called, or the session was logged out elsewhere.
    over: bool,
    /// `save()` or `cycle_id()` asked for a save not yet done.
    save_asked: bool,
    /// Bumped when the session ends (`delete`, `invalidate`, a logout):
    /// views from before write nothing.
    generation: u64,
    /// Records to delete whatever the outcome.
    ended: Vec<Slot>,
    views: [Option<ModelView>; 2],
}

impl Model {
    fn new(case: &Case) -> Self {
        let mut model = Model {
            records: BTreeMap::new(),
            offered: case.start,
            id: Slot::New(0),
            new_ids: 1,
            home: None,
            base: Data::new(),
            data: Data::new(),
            writer: BTreeMap::new(),
            over: false,
            save_asked: false,
            generation: 0,
            ended: Vec::new(),
            views: [None, None],
        };
        if case.start == Start::Loaded {
            let data = loaded_data(&case.loaded);
            model.records.insert(Slot::Loaded, data.clone());
            model.id = Slot::Loaded;
            model.home = Some(Slot::Loaded);
            model.base = data.clone();
            model.data = data;
        }
        model
    }

    fn new_id(&mut self) -> Slot {
        self.new_ids += 1;
        Slot::New(self.new_ids)
    }

    /// A change by a handler: writing the value a key holds is none.
    fn change(&mut self, key: &str, value: Option<Value>, auto: bool) {
        if self.over || self.data.get(key) == value.as_ref() {
            return;
        }
        match value {
            Some(value) => self.data.insert(key.to_owned(), value),
            None => self.data.remove(key),
        };
        self.writer.insert(key.to_owned(), auto);
    }

    /// The session ends for the views: a new generation, no data.
    fn end(&mut self) {
        self.data.clear();
        self.writer.clear();
        self.save_asked = false;
        self.generation += 1;
    }

    fn delete(&mut self) {
        self.ended.extend(self.home.take());
        self.over = true;
        self.end();
    }

    /// Logged out by another request: nothing to delete, nothing more
    /// written.
    fn logout(&mut self) {
        self.home = None;
        self.over = true;
        self.end();
    }

    /// After a deletion the session is over: nothing to invalidate.
    fn invalidate(&mut self) {
        if self.over {
            return;
        }
        self.ended.extend(self.home.take());
        self.id = self.new_id();
        self.base.clear();
        self.end();
    }

    fn cycle(&mut self) {
        if !self.over {
            self.id = self.new_id();
            self.save_asked = true;
        }
    }

    fn load_view(&mut self, view: usize, auto: bool) {
        self.flush_view(view);
        let fields = VIEW_KEYS.map(|key| self.data.get(key).cloned().unwrap_or(Value::Null));
        self.views[view] = Some(ModelView {
            generation: self.generation,
            auto,
            baseline: fields.clone(),
            fields,
        });
    }

    fn flush_view(&mut self, view: usize) {
        let Some(view) = &mut self.views[view] else {
            return;
        };
        let mut changed = Vec::new();
        for ((key, field), baseline) in VIEW_KEYS.iter().zip(&view.fields).zip(&mut view.baseline) {
            if field != baseline {
                *baseline = field.clone();
                changed.push((*key, field.clone()));
            }
        }
        let (generation, auto) = (view.generation, view.auto);
        if generation != self.generation {
            return;
        }
        for (key, value) in changed {
            self.change(key, Some(value), auto);
        }
    }

    /// A write (`persist()`, or the end of the request).
    fn write(&mut self, outcome: Outcome) {
        // Rule 1: ended records go whatever the outcome.
        for slot in self.ended.drain(..) {
            self.records.remove(&slot);
        }
        // Rule 2.
        if matches!(outcome, Outcome::Failed | Outcome::Panicked) || self.over {
            return;
        }
        // Rule 3.
        let all = outcome == Outcome::Persist || self.save_asked;
        let keys: BTreeSet<String> = self.data.keys().chain(self.base.keys()).cloned().collect();
        let diff: Vec<(String, Option<Value>)> = keys
            .into_iter()
            .filter(|key| self.data.get(key) != self.base.get(key))
            .filter(|key| all || self.writer.get(key) == Some(&true))
            .map(|key| {
                let value = self.data.get(&key).cloned();
                (key, value)
            })
            .collect();
        let apply = |data: &mut Data| {
            for (key, value) in &diff {
                match value {
                    Some(value) => data.insert(key.clone(), value.clone()),
                    None => data.remove(key),
                };
            }
        };
        // Rules 4 and 5.
        match self.home {
            None => {
                let record: Data = diff
                    .iter()
                    .filter_map(|(key, value)| Some((key.clone(), value.clone()?)))
                    .collect();
                if record.is_empty() {
                    return;
                }
                self.records.insert(self.id, record.clone());
                self.base = record;
            }
            Some(home) if home == self.id => {
                if diff.is_empty() {
                    return;
                }
                let Some(record) = self.records.get_mut(&home) else {
                    return self.logout();
                };
                apply(record);
                apply(&mut self.base);
            }
            Some(home) if self.data.is_empty() => {
                self.records.remove(&home);
                self.home = None;
                self.base.clear();
                return;
            }
            Some(home) => {
                let Some(mut record) = self.records.remove(&home) else {
                    return self.logout();
                };
                apply(&mut record);
                apply(&mut self.base);
                self.records.insert(self.id, record);
            }
        }
        self.home = Some(self.id);
        self.save_asked = false;
    }

    /// Rule 6, for a server-side session with the default configuration.
    fn told(&self) -> Told {
        match self.home.filter(|_| !self.over) {
            Some(Slot::Loaded) if self.offered == Start::Loaded => Told::Keep,
            Some(Slot::Loaded) => Told::SetLoaded,
            Some(slot) => Told::SetNew(self.records.get(&slot).cloned()),
            None if self.offered == Start::Fresh => Told::Keep,
            None => Told::Remove,
        }
    }
}

fn run_model(case: &Case) -> Observed {
    let mut model = Model::new(case);
    let mut seen = Vec::new();
    for op in &case.ops {
        match *op {
            Op::Insert { key, value, auto } => model.change(KEYS[key], Some(json!(value)), auto),
            Op::Remove { key, auto } => model.change(KEYS[key], None, auto),
            Op::Clear { auto } => {
                let keys: Vec<String> = model.data.keys().cloned().collect();
                for key in keys {
                    model.change(&key, None, auto);
                }
            }
            Op::Save => model.save_asked |= !model.over,
            Op::Persist => model.write(Outcome::Persist),
            Op::Delete => model.delete(),
            Op::Invalidate => model.invalidate(),
            Op::Cycle => model.cycle(),
            Op::ViewLoad { view, auto } => model.load_view(view, auto),
            Op::ViewSet { view, field, value } => {
                if let Some(view) = &mut model.views[view] {
                    view.fields[field] = value.map_or(Value::Null, |value| json!(value));
                }
            }
            Op::ViewFlush { view } => model.flush_view(view),
            Op::Vanish => model.records.clear(),
        }
        seen.push(model.data.clone());
    }
    model.flush_view(0);
    model.flush_view(1);
    model.write(case.end.outcome());
    seen.push(model.data.clone());
    let told = (case.end != End::Panicked).then(|| model.told());
    let loaded = model.records.remove(&Slot::Loaded);
    Observed {
        seen,
        loaded,
        others: sorted(model.records.into_values().collect()),
        told,
    }
}

// ---------------------------------------------------------------------------

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let view = 0..2usize;
    prop_oneof![
        4 => (key.clone(), 0..2u8, any::<bool>())
            .prop_map(|(key, value, auto)| Op::Insert { key, value, auto }),
        2 => (key, any::<bool>()).prop_map(|(key, auto)| Op::Remove { key, auto }),
        2 => any::<bool>().prop_map(|auto| Op::Clear { auto }),
        2 => Just(Op::Save),
        2 => Just(Op::Persist),
        1 => Just(Op::Delete),
        1 => Just(Op::Invalidate),
        2 => Just(Op::Cycle),
        2 => (view.clone(), any::<bool>()).prop_map(|(view, auto)| Op::ViewLoad { view, auto }),
        3 => (view.clone(), 0..2usize, proptest::option::of(0..2u8))
            .prop_map(|(view, field, value)| Op::ViewSet { view, field, value }),
        2 => view.prop_map(|view| Op::ViewFlush { view }),
        1 => Just(Op::Vanish),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![3 => Just(Start::Loaded), 1 => Just(Start::Fresh), 1 => Just(Start::Stale)],
        proptest::collection::btree_map(0..KEYS.len(), 0..2u8, 1..=3),
        proptest::collection::vec(op(), 0..=12),
        prop_oneof![3 => Just(End::Answered), 1 => Just(End::Failed), 1 => Just(End::Panicked)],
    )
        .prop_map(|(start, loaded, ops, end)| Case {
            start,
            loaded: loaded.into_iter().collect(),
            ops,
            end,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn one_request_matches_the_model(case in case()) {
        prop_assert_eq!(run_code(&case), run_model(&case), "{:#?}", case);
    }
}

/// Found by the property test. Rules 3 and 4: the handler sees `a: 1`,
/// written by an `auto` writer after the record was dropped, so the save has
/// data and creates a record. The code once created none (the change
/// compared equal with the dropped record's value) and told the browser to
/// drop its cookie: the value was lost.
#[test]
fn data_set_after_a_dropped_record_is_saved() {
    let case = Case {
        start: Start::Loaded,
        loaded: vec![(0, 1)],
        ops: vec![
            Op::Clear { auto: true },
            Op::Cycle,
            Op::Persist,
            Op::Insert {
                key: 0,
                value: 1,
                auto: true,
            },
        ],
        end: End::Answered,
    };
    let code = run_code(&case);
    assert_eq!(code.loaded, None, "the old record is gone");
    assert_eq!(code.told, Some(Told::SetNew(Some(loaded_data(&[(0, 1)])))));
    assert_eq!(code, run_model(&case));
}

/// Found by the property test. `Session::delete`: after `delete()` nothing
/// more is written for the request. The code once let `invalidate()` start
/// a new session and saved it (a new record `{"a": 0}`, a cookie set for it).
#[test]
fn invalidate_after_delete_starts_nothing() {
    let case = Case {
        start: Start::Loaded,
        loaded: vec![(0, 1)],
        ops: vec![
            Op::Delete,
            Op::Invalidate,
            Op::Insert {
                key: 0,
                value: 0,
                auto: true,
            },
        ],
        end: End::Answered,
    };
    let code = run_code(&case);
    assert_eq!(code.loaded, None);
    assert!(code.others.is_empty(), "no new record: {:?}", code.others);
    assert_eq!(code.told, Some(Told::Remove));
    assert_eq!(code, run_model(&case));
}
