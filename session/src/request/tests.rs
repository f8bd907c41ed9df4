//! The planner as a table: every combination of where the session stands,
//! what the handler did and how the request ended, against a small store,
//! with the store operations and the cookie the response carries.

use std::collections::BTreeMap;

use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::config::{Config, CookieExpiry};
use crate::error::StoreError;
use crate::id::{SessionId, StoreKey};
use crate::record::{Data, Record, SaveKind, SaveOutcome};
use crate::request::plan::{self, CookieDecision, Outcome, Plan, Settled, Write};
use crate::request::state::{Origin, State};
use crate::request::tracked::Saver;

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

/// A store of records by key, recording what it is asked to do (also the
/// store of the property test in `model`).
#[derive(Default)]
pub(super) struct Store {
    pub(super) records: BTreeMap<StoreKey, Data>,
    ops: Vec<String>,
}

/// The names the table uses for ids: the loaded one, and the new one.
pub(super) struct Names {
    pub(super) loaded: StoreKey,
}

impl Names {
    fn of(&self, key: &StoreKey) -> &'static str {
        if *key == self.loaded {
            "L"
        } else {
            "N"
        }
    }
}

impl Store {
    pub(super) fn execute(&mut self, plan: &Plan, names: &Names) -> Result<Option<SaveOutcome>, StoreError> {
        for key in &plan.delete {
            self.ops.push(format!("del({})", names.of(key)));
            self.records.remove(key);
        }
        Ok(match &plan.write {
            None => None,
            Some(Write::Create { key, change }) => {
                assert_eq!(change.kind, SaveKind::Create);
                self.ops.push(format!("create({})", names.of(key)));
                if self.records.contains_key(key) {
                    return Err(StoreError::Conflict);
                }
                self.records.insert(key.clone(), change.set.clone());
                Some(SaveOutcome::Saved)
            }
            Some(Write::Update { key, change }) => {
                let what = if change.is_touch() { "touch" } else { "update" };
                self.ops.push(format!("{what}({})", names.of(key)));
                match self.records.get_mut(key) {
                    None => Some(SaveOutcome::Missing),
                    Some(data) => {
                        let mut record = Record {
                            data: std::mem::take(data),
                            created: change.created,
                            accessed: change.accessed,
                            expires: change.expires,
                        };
                        change.apply(&mut record);
                        *data = record.data;
                        Some(SaveOutcome::Saved)
                    }
                }
            }
            Some(Write::Cycle { from, to, change }) => {
                self.ops
                    .push(format!("cycle({}>{})", names.of(from), names.of(to)));
                match self.records.remove(from) {
                    None => Some(SaveOutcome::Missing),
                    Some(data) => {
                        let mut record = Record {
                            data,
                            created: change.created,
                            accessed: change.accessed,
                            expires: change.expires,
                        };
                        change.apply(&mut record);
                        self.records.insert(to.clone(), record.data);
                        Some(SaveOutcome::Saved)
                    }
                }
            }
        })
    }
}

/// Plans, executes and settles once (as the handle does).
fn write(state: &mut State, store: &mut Store, config: &Config, outcome: Outcome, names: &Names) {
    let plan = plan::plan(state, config, NOW, outcome);
    let result = store.execute(&plan, names);
    assert_eq!(
        plan::settle(state, &plan, result, NOW).expect("no store error"),
        Settled::Done
    );
}

fn loaded_record() -> Record {
    let mut data = Data::new();
    data.insert("a".into(), json!(1));
    Record {
        data,
        // Its cookie came back before: no confirming touch is due.
        created: NOW - time::Duration::days(1),
        accessed: NOW,
        expires: NOW + time::Duration::days(1),
    }
}

/// Runs one row: `origin` is `fresh` (no cookie), `stale` (a cookie naming
/// no session), `loaded`, or `missing` (loaded, then deleted by another
/// request before this one writes).
fn run(origin: &str, action: &str, outcome: &str) -> (String, String, String) {
    let config = Config::default();
    let loaded_id = SessionId::generate();
    let names = Names {
        loaded: loaded_id.store_key(),
    };
    let mut store = Store::default();
    let mut state = match origin {
        "fresh" => State::fresh(Origin::NoCookie, NOW),
        "stale" => State::fresh(Origin::Stale, NOW),
        "loaded" | "missing" => {
            if origin == "loaded" {
                store.records.insert(names.loaded.clone(), loaded_record().data);
            }
            State::loaded(loaded_id.clone(), false, loaded_record(), NOW)
        }
        _ => unreachable!("{origin}"),
    };
    match action {
        "nothing" => {}
        "modify" => state.set("k".into(), json!(2), Saver::Auto),
        "save" => {
            state.set("k".into(), json!(2), Saver::Explicit(None));
            state.request_save();
        }
        "persist" => {
            state.set("k".into(), json!(2), Saver::Explicit(None));
            write(&mut state, &mut store, &config, Outcome::Persist, &names);
        }
        "delete" => state.delete(),
        "invalidate" => state.invalidate(NOW),
        "cycle" => state.cycle(),
        "clear+cycle" => {
            state.clear(Saver::Auto);
            state.cycle();
        }
        _ => unreachable!("{action}"),
    }
    let outcome = match outcome {
        "ok" => Outcome::Answered,
        "5xx" => Outcome::Failed,
        "panic" => Outcome::Panicked,
        _ => unreachable!("{outcome}"),
    };
    write(&mut state, &mut store, &config, outcome, &names);
    let ops = if store.ops.is_empty() {
        "-".to_owned()
    } else {
        store.ops.join(" ")
    };
    let cookie = if outcome == Outcome::Panicked {
        // The response is made by whatever catches the panic.
        "-".to_owned()
    } else {
        match plan::cookie(&state, &config, false) {
            CookieDecision::Keep => "keep".to_owned(),
            CookieDecision::Remove => "remove".to_owned(),
            CookieDecision::Set(id) => {
                assert_eq!(id, state.id, "a set cookie names the session's current id");
                format!("set({})", names.of(&id.store_key()))
            }
        }
    };
    let left: Vec<&str> = store.records.keys().map(|key| names.of(key)).collect();
    let left = if left.is_empty() {
        "-".to_owned()
    } else {
        left.join(",")
    };
    (ops, cookie, left)
}

/// origin, action, outcome | store operations | cookie | records left.
/// `L` is the loaded id, `N` a new one. Each `fresh` row stands for a
/// `stale` row too, the same but that the cookie a fresh session keeps is
/// removed (see `stale_row`).
const TABLE: &str = "
fresh   nothing     ok    | -              | keep     | -
fresh   nothing     5xx   | -              | keep     | -
fresh   nothing     panic | -              | -        | -
fresh   modify      ok    | create(N)      | set(N)   | N
fresh   modify      5xx   | -              | keep     | -
fresh   modify      panic | -              | -        | -
fresh   save        ok    | create(N)      | set(N)   | N
fresh   save        5xx   | -              | keep     | -
fresh   save        panic | -              | -        | -
fresh   persist     ok    | create(N)      | set(N)   | N
fresh   persist     5xx   | create(N)      | set(N)   | N
fresh   persist     panic | create(N)      | -        | N
fresh   delete      ok    | -              | keep     | -
fresh   delete      5xx   | -              | keep     | -
fresh   delete      panic | -              | -        | -
fresh   invalidate  ok    | -              | keep     | -
fresh   invalidate  5xx   | -              | keep     | -
fresh   invalidate  panic | -              | -        | -
fresh   cycle       ok    | -              | keep     | -
fresh   cycle       5xx   | -              | keep     | -
fresh   cycle       panic | -              | -        | -
fresh   clear+cycle ok    | -              | keep     | -
fresh   clear+cycle 5xx   | -              | keep     | -
fresh   clear+cycle panic | -              | -        | -
loaded  nothing     ok    | -              | keep     | L
loaded  nothing     5xx   | -              | keep     | L
loaded  nothing     panic | -              | -        | L
loaded  modify      ok    | update(L)      | keep     | L
loaded  modify      5xx   | -              | keep     | L
loaded  modify      panic | -              | -        | L
loaded  save        ok    | update(L)      | keep     | L
loaded  save        5xx   | -              | keep     | L
loaded  save        panic | -              | -        | L
loaded  persist     ok    | update(L)      | keep     | L
loaded  persist     5xx   | update(L)      | keep     | L
loaded  persist     panic | update(L)      | -        | L
loaded  delete      ok    | del(L)         | remove   | -
loaded  delete      5xx   | del(L)         | remove   | -
loaded  delete      panic | del(L)         | -        | -
loaded  invalidate  ok    | del(L)         | remove   | -
loaded  invalidate  5xx   | del(L)         | remove   | -
loaded  invalidate  panic | del(L)         | -        | -
loaded  cycle       ok    | cycle(L>N)     | set(N)   | N
loaded  cycle       5xx   | -              | keep     | L
loaded  cycle       panic | -              | -        | L
loaded  clear+cycle ok    | del(L)         | remove   | -
loaded  clear+cycle 5xx   | -              | keep     | L
loaded  clear+cycle panic | -              | -        | L
missing nothing     ok    | -              | keep     | -
missing nothing     5xx   | -              | keep     | -
missing nothing     panic | -              | -        | -
missing modify      ok    | update(L)      | remove   | -
missing modify      5xx   | -              | keep     | -
missing modify      panic | -              | -        | -
missing save        ok    | update(L)      | remove   | -
missing save        5xx   | -              | keep     | -
missing save        panic | -              | -        | -
missing persist     ok    | update(L)      | remove   | -
missing persist     5xx   | update(L)      | remove   | -
missing persist     panic | update(L)      | -        | -
missing delete      ok    | del(L)         | remove   | -
missing delete      5xx   | del(L)         | remove   | -
missing delete      panic | del(L)         | -        | -
missing invalidate  ok    | del(L)         | remove   | -
missing invalidate  5xx   | del(L)         | remove   | -
missing invalidate  panic | del(L)         | -        | -
missing cycle       ok    | cycle(L>N)     | remove   | -
missing cycle       5xx   | -              | keep     | -
missing cycle       panic | -              | -        | -
missing clear+cycle ok    | del(L)         | remove   | -
missing clear+cycle 5xx   | -              | keep     | -
missing clear+cycle panic | -              | -        | -
";

/// The `stale` row a `fresh` row stands for: a cookie that names no session
/// is told to go where no cookie is kept.
fn stale_row(fresh: &str) -> String {
    let row = fresh.replacen("fresh", "stale", 1);
    let cells: Vec<&str> = row.split('|').collect();
    match cells[..] {
        [case, ops, cookie, left] if cookie.trim() == "keep" => format!("{case}|{ops}| remove |{left}"),
        _ => row,
    }
}

#[test]
fn the_planner_table() {
    let mut failures = Vec::new();
    let mut rows = 0;
    let written = TABLE.lines().filter(|line| !line.trim().is_empty());
    let stale = written
        .clone()
        .filter(|line| line.starts_with("fresh"))
        .map(stale_row);
    for line in written.map(str::to_owned).chain(stale) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [case, ops, cookie, left] = cells[..] else {
            panic!("malformed row {line:?}");
        };
        let [origin, action, outcome] = case.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("malformed case {case:?}");
        };
        rows += 1;
        let got = run(origin, action, outcome);
        if got != (ops.to_owned(), cookie.to_owned(), left.to_owned()) {
            failures.push(format!(
                "{case:<26} | expected {ops} | {cookie} | {left}; got {} | {} | {}",
                got.0, got.1, got.2
            ));
        }
    }
    assert_eq!(rows, 4 * 8 * 3, "every combination has a row");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_due_touch_refreshes_only_the_timestamps() {
    let config = Config::default();
    let id = SessionId::generate();
    let mut record = loaded_record();
    record.accessed = NOW - time::Duration::minutes(2);
    let state = State::loaded(id.clone(), false, record, NOW);
    let plan = plan::plan(&state, &config, NOW, Outcome::Answered);
    match &plan.write {
        Some(Write::Update { key, change }) => {
            assert_eq!(*key, id.store_key());
            assert!(change.is_touch());
            assert_eq!(change.accessed, NOW);
        }
        other => panic!("expected a touch, got {other:?}"),
    }
    let off = Config {
        save_accessed_time: false,
        ..Config::default()
    };
    assert!(plan::plan(&state, &off, NOW, Outcome::Answered).is_empty());
    assert!(
        plan::plan(&state, &config, NOW, Outcome::Failed).is_empty(),
        "a failed request does not touch"
    );
}

#[test]
fn touch_refreshes_when_nothing_else_would_and_a_sessions_expiry_counts() {
    let off = Config {
        save_accessed_time: false,
        ..Config::default()
    };
    let id = SessionId::generate();
    let mut record = loaded_record();
    record.accessed = NOW - time::Duration::seconds(5);
    let mut state = State::loaded(id, false, record, NOW);
    assert!(plan::plan(&state, &off, NOW, Outcome::Answered).is_empty());
    state.request_touch();
    let plan = plan::plan(&state, &off, NOW, Outcome::Answered);
    match &plan.write {
        Some(Write::Update { change, .. }) => {
            assert!(change.is_touch());
            assert_eq!(change.expires, NOW + off.idle_timeout, "the layer's idle timeout");
        }
        other => panic!("expected a touch, got {other:?}"),
    }
    assert!(plan::plan(&state, &off, NOW, Outcome::Failed).is_empty());
    // With its own idle timeout, the stored expiry follows it.
    let own = crate::config::SessionExpiry::remember_for(std::time::Duration::from_secs(7 * 86_400));
    state.set(crate::config::EXPIRY_KEY.into(), own.to_value(), Saver::Auto);
    match plan::plan(&state, &off, NOW, Outcome::Answered).write {
        Some(Write::Update { change, .. }) => assert_eq!(change.expires, NOW + time::Duration::days(7)),
        other => panic!("expected an update, got {other:?}"),
    }
    state.delete();
    assert!(
        plan::plan(&state, &off, NOW, Outcome::Answered).write.is_none(),
        "deleted: no touch"
    );
}

#[test]
fn unsaved_explicit_changes_are_not_written_but_auto_ones_are() {
    let config = Config::default();
    let mut state = State::loaded(SessionId::generate(), false, loaded_record(), NOW);
    state.set("cart".into(), json!([1]), Saver::Explicit(Some("Cart")));
    state.set("visits".into(), json!(3), Saver::Auto);
    let plan = plan::plan(&state, &config, NOW, Outcome::Answered);
    let Some(Write::Update { change, .. }) = &plan.write else {
        panic!("an update");
    };
    assert_eq!(change.set.keys().collect::<Vec<_>>(), ["visits"]);
    assert_eq!(state.tracked.unsaved()[&Some("Cart")], ["cart"]);
    state.request_save();
    let plan = plan::plan(&state, &config, NOW, Outcome::Answered);
    let Some(Write::Update { change, .. }) = &plan.write else {
        panic!("an update");
    };
    assert_eq!(change.set.len(), 2, "save() saves every change");
}

#[test]
fn an_old_key_or_a_sliding_expiry_rewrites_the_cookie_on_a_write_only() {
    let id = SessionId::generate();
    let sliding = Config {
        cookie_expires: CookieExpiry::MaxAge(std::time::Duration::from_secs(24 * 60 * 60)),
        ..Config::default()
    };
    for (config, old_key) in [(&Config::default(), true), (&sliding, false)] {
        let mut state = State::loaded(id.clone(), old_key, loaded_record(), NOW);
        assert_eq!(
            plan::cookie(&state, config, false),
            CookieDecision::Keep,
            "no write, no cookie"
        );
        state.wrote = true;
        assert_eq!(
            plan::cookie(&state, config, false),
            CookieDecision::Set(id.clone())
        );
    }
    let mut state = State::loaded(id.clone(), false, loaded_record(), NOW);
    state.wrote = true;
    assert_eq!(
        plan::cookie(&state, &Config::default(), false),
        CookieDecision::Keep
    );
    assert_eq!(
        plan::cookie(&state, &Config::default(), true),
        CookieDecision::Set(id),
        "a client-side session is its cookie"
    );
}

#[test]
fn a_taken_new_id_is_replaced_and_planned_again() {
    let config = Config::default();
    let mut state = State::fresh(Origin::NoCookie, NOW);
    state.set("k".into(), json!(1), Saver::Auto);
    let first = state.id.clone();
    let plan = plan::plan(&state, &config, NOW, Outcome::Answered);
    assert_eq!(
        plan::settle(&mut state, &plan, Err(StoreError::Conflict), NOW).unwrap(),
        Settled::Retry
    );
    assert_ne!(state.id, first);
    let plan = plan::plan(&state, &config, NOW, Outcome::Answered);
    assert!(matches!(&plan.write, Some(Write::Create { key, .. }) if *key == state.id.store_key()));
    // Any other error leaves the changes pending.
    assert!(plan::settle(
        &mut state,
        &plan,
        Err(StoreError::Timeout(std::time::Duration::from_secs(1))),
        NOW
    )
    .is_err());
    assert!(state.tracked.is_modified());
}

#[test]
fn views_from_before_an_end_are_told_by_the_epoch() {
    let mut state = State::loaded(SessionId::generate(), false, loaded_record(), NOW);
    let before = state.epoch;
    state.cycle();
    assert_eq!(state.epoch, before, "a cycle keeps the data and the views");
    state.invalidate(NOW);
    assert_ne!(state.epoch, before);
    let after = state.epoch;
    state.delete();
    assert_ne!(state.epoch, after);
    state.set("k".into(), json!(1), Saver::Auto);
    assert!(!state.tracked.is_modified(), "a deleted session takes no writes");
}

#[test]
fn a_new_session_is_stored_briefly_until_its_cookie_comes_back() {
    let config = Config::default();
    let mut state = State::fresh(Origin::NoCookie, NOW);
    state.set("a".into(), json!(1), Saver::Auto);
    match plan::plan(&state, &config, NOW, Outcome::Answered).write {
        Some(Write::Create { change, .. }) => {
            assert_eq!(Some(change.expires - NOW), config.unconfirmed_timeout);
        }
        other => panic!("expected a create, got {other:?}"),
    }
    // Presented (loaded from its cookie) with the short expiry: a write is
    // due that gives it the full idle timeout.
    let mut record = loaded_record();
    record.expires = record.accessed + time::Duration::hours(1);
    record.created = record.accessed;
    let mut state = State::loaded(SessionId::generate(), false, record, NOW);
    state.confirm_due = true;
    match plan::plan(&state, &config, NOW, Outcome::Answered).write {
        Some(Write::Update { change, .. }) => {
            assert!(change.is_touch());
            assert_eq!(change.expires, NOW + config.idle_timeout);
        }
        other => panic!("expected a confirming touch, got {other:?}"),
    }
    // After invalidate() the new session is unconfirmed again.
    state.invalidate(NOW);
    state.set("b".into(), json!(2), Saver::Auto);
    match plan::plan(&state, &config, NOW, Outcome::Answered).write {
        Some(Write::Create { change, .. }) => assert_eq!(change.expires, NOW + time::Duration::hours(1)),
        other => panic!("expected a create, got {other:?}"),
    }
}
