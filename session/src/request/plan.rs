//! The planner: what a request's session state means for the store and the
//! browser. Pure functions, no I/O: [`plan`] turns the state and the
//! request's outcome into store operations, [`settle`] records what the
//! store answered, [`cookie`] decides what the response tells the browser.
//!
//! The rules, in the order they apply:
//!
//! 1. Ids ended by `delete()`/`invalidate()` are deleted whatever the
//!    outcome (a 5xx, a panic).
//! 2. A failed request (5xx, panic) and a deleted session write nothing
//!    else.
//! 3. A save writes every change if one was asked for (`save()`,
//!    `persist()`, `cycle_id()`), else only the changes of `auto` writers.
//! 4. A session with no record is created only if the save has data; a
//!    loaded one is updated with the changed keys (or touched, when its
//!    accessed time is due); a cycled one is moved to its new id, atomically
//!    and only if it still exists, or deleted if no data is left.
//! 5. A record found missing by an update or a move was deleted by another
//!    request: the session is logged out, nothing is created.
//! 6. The browser is sent a cookie when the live session's id is not the one
//!    it offered (or a write refreshes a sliding expiry, re-signs a cookie
//!    verified under an old secret, or re-encodes a client-side session),
//!    and a removal only when it offered a session cookie and no live
//!    session is left.

use time::OffsetDateTime;

use crate::config::Config;
use crate::error::StoreError;
use crate::id::{SessionId, StoreKey};
use crate::record::{Change, SaveKind, SaveOutcome};
use crate::request::state::{Origin, State};
use crate::request::tracked::Diff;

/// How the request went, as far as the session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler answered (not 5xx): deferred saves happen.
    Answered,
    /// The handler answered 5xx: only deletions happen.
    Failed,
    /// The handler panicked: only deletions happen.
    Panicked,
    /// `persist()`: write now, every change.
    Persist,
}

/// A write to the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// A new record under a new id.
    Create { key: StoreKey, change: Change },
    /// Merge the changed keys into the loaded record.
    Update { key: StoreKey, change: Change },
    /// Move the record to its new id, merging the changed keys.
    Cycle {
        from: StoreKey,
        to: StoreKey,
        change: Change,
    },
}

/// What the store must do, in order: the deletions, then the write.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Plan {
    pub(crate) delete: Vec<StoreKey>,
    pub(crate) write: Option<Write>,
    /// The record under `State::stored` is among the deletions (a cycle with
    /// no data left).
    pub(crate) drops_stored: bool,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.write.is_none()
    }

    fn change(&self) -> Option<&Change> {
        match &self.write {
            Some(
                Write::Create { change, .. } | Write::Update { change, .. } | Write::Cycle { change, .. },
            ) => Some(change),
            None => None,
        }
    }
}

/// Whether a save writes every change (one was asked for) or only those of
/// `auto` writers.
pub(crate) fn saves_all(state: &State, outcome: Outcome) -> bool {
    outcome == Outcome::Persist || state.save_requested
}

/// Decides what the store must do.
pub(crate) fn plan(state: &State, config: &Config, now: OffsetDateTime, outcome: Outcome) -> Plan {
    let mut plan = Plan {
        delete: state.ended.iter().map(SessionId::store_key).collect(),
        ..Plan::default()
    };
    if matches!(outcome, Outcome::Failed | Outcome::Panicked) || state.deleted {
        return plan;
    }
    let diff = state.tracked.diff(saves_all(state, outcome));
    let lifetime = config.lifetime(state.tracked.data());
    let change = |kind, diff: Diff| Change {
        kind,
        set: diff.set,
        removed: diff.removed,
        created: state.created,
        accessed: now,
        expires: match config.unconfirmed_timeout {
            // Until its cookie comes back, a new session lives only
            // briefly: a flood of cookieless requests cannot fill the store.
            Some(brief) if !state.presented => lifetime
                .expires(state.created, now)
                .min(now.saturating_add(brief)),
            _ => lifetime.expires(state.created, now),
        },
    };
    plan.write = match &state.stored {
        None if diff.set.is_empty() => None,
        None => Some(Write::Create {
            key: state.id.store_key(),
            change: change(
                SaveKind::Create,
                Diff {
                    set: diff.set,
                    removed: Vec::new(),
                },
            ),
        }),
        Some(stored) if *stored == state.id => {
            let touch_due = state.touch_requested
                || state.confirm_due
                || config.save_accessed_time
                    && state
                        .stored_accessed
                        .is_none_or(|at| now - at >= config.accessed_refresh);
            (!diff.is_empty() || touch_due).then(|| Write::Update {
                key: stored.store_key(),
                change: change(SaveKind::Update, diff),
            })
        }
        Some(stored) if state.tracked.data().is_empty() => {
            plan.delete.push(stored.store_key());
            plan.drops_stored = true;
            None
        }
        Some(stored) => Some(Write::Cycle {
            from: stored.store_key(),
            to: state.id.store_key(),
            change: change(SaveKind::Update, diff),
        }),
    };
    plan
}

/// What [`settle`] asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The plan is carried out.
    Done,
    /// The new id was taken: a fresh one has been chosen; plan again.
    Retry,
}

/// Records what the store answered to `plan`. `result` is the write's
/// answer (`None`: the plan had no write).
///
/// # Errors
///
/// The store's error, other than a conflict on a new id (which picks a
/// fresh id and answers [`Settled::Retry`]). The state is then unchanged:
/// its changes stay pending and a later save retries them.
pub(crate) fn settle(
    state: &mut State,
    plan: &Plan,
    result: Result<Option<SaveOutcome>, StoreError>,
    now: OffsetDateTime,
) -> Result<Settled, StoreError> {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(StoreError::Conflict)
            if matches!(plan.write, Some(Write::Create { .. } | Write::Cycle { .. })) =>
        {
            // The deletions before the write went through.
            state.ended.clear();
            state.id = SessionId::generate();
            return Ok(Settled::Retry);
        }
        Err(err) => return Err(err),
    };
    state.ended.clear();
    if plan.drops_stored {
        state.stored = None;
        state.tracked.emptied();
    }
    match outcome {
        None => {}
        Some(SaveOutcome::Saved) => {
            state.stored = Some(state.id.clone());
            state.stored_accessed = Some(now);
            state.save_requested = false;
            state.touch_requested = false;
            state.confirm_due = false;
            state.wrote = true;
            if let Some(change) = plan.change() {
                state.tracked.written(&Diff {
                    set: change.set.clone(),
                    removed: change.removed.clone(),
                });
            }
        }
        Some(SaveOutcome::Missing) => state.vanished(),
    }
    Ok(Settled::Done)
}

/// What the response must tell the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieDecision {
    /// Nothing.
    Keep,
    /// A cookie for this id (for a client-side session: its encoded value).
    Set(SessionId),
    /// Remove the cookie the browser sent.
    Remove,
}

/// Decides the cookie once the request's writes are done. `client`: the
/// session lives in the cookie, so every write must reach the browser.
pub(crate) fn cookie(state: &State, config: &Config, client: bool) -> CookieDecision {
    let live = state.stored.as_ref().filter(|_| !state.deleted);
    match live {
        Some(id) => {
            let (offered_same, old_key) = match &state.origin {
                Origin::Valid { id: offered, old_key } => (offered == id, *old_key),
                Origin::NoCookie | Origin::Stale => (false, false),
            };
            let sliding = config.lifetime(state.tracked.data()).sliding_cookie();
            let rewrite = state.wrote && (client || sliding || old_key || state.expiry_changed);
            if !offered_same || rewrite {
                CookieDecision::Set(id.clone())
            } else {
                CookieDecision::Keep
            }
        }
        None if state.origin == Origin::NoCookie => CookieDecision::Keep,
        None => CookieDecision::Remove,
    }
}
