//! One request's session as the handlers change it: the id, the data, and
//! what has happened to the session (deleted, invalidated, cycled). No I/O:
//! the planner reads this to decide what the store and the browser are told.

use time::OffsetDateTime;

use crate::id::SessionId;
use crate::record::Record;
use crate::request::tracked::{Saver, Tracked};

/// What the request's cookie said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// No cookie with the session cookie's name.
    NoCookie,
    /// A cookie that failed verification, or named no live session
    /// (unknown, expired, corrupt): the browser should stop sending it.
    Stale,
    /// A cookie naming the loaded session, signed with the current key
    /// (`old_key: false`) or an old one.
    Valid { id: SessionId, old_key: bool },
}

/// The session.
#[derive(Debug)]
pub(crate) struct State {
    /// The session's id now (a new one after `cycle_id`, `invalidate`).
    pub(crate) id: SessionId,
    pub(crate) origin: Origin,
    /// The id under which this request knows a record exists: the loaded
    /// one, or one this request wrote. It differs from `id` while a cycle is
    /// pending.
    pub(crate) stored: Option<SessionId>,
    pub(crate) tracked: Tracked,
    pub(crate) created: OffsetDateTime,
    pub(crate) accessed: OffsetDateTime,
    pub(crate) last_accessed: Option<OffsetDateTime>,
    /// The accessed time the store holds, for deciding whether a refresh is due.
    pub(crate) stored_accessed: Option<OffsetDateTime>,
    /// Ids ended by `delete`/`invalidate`: deleted from the store whatever
    /// the response.
    pub(crate) ended: Vec<SessionId>,
    /// `delete()` was called, or the session vanished from the store
    /// (a logout elsewhere): nothing more is written for this request.
    pub(crate) deleted: bool,
    /// Bumped by `delete`/`invalidate`: typed views made before write
    /// nothing after.
    pub(crate) epoch: u64,
    /// `save()` (on the session or a view) or `cycle_id()` was called.
    pub(crate) save_requested: bool,
    /// `touch()` was called: the next save refreshes the timestamps even
    /// with no change and no refresh due.
    pub(crate) touch_requested: bool,
    /// The session's own expiry was set in this request: a written cookie
    /// is sent again with its new attributes.
    pub(crate) expiry_changed: bool,
    /// The session came from a cookie the browser sent: it is confirmed.
    /// A session the browser has not presented yet (new, or new after
    /// `invalidate()`) is stored with the short `unconfirmed_timeout`.
    pub(crate) presented: bool,
    /// The loaded record still has the short expiry of a session whose
    /// cookie had not come back (this is the first time): a write is due
    /// that gives it its full lifetime. Set by the loader.
    pub(crate) confirm_due: bool,
    /// A write reached the store during this request.
    pub(crate) wrote: bool,
    /// For a client-side session: the cookie value last encoded.
    pub(crate) client_value: Option<String>,
}

impl State {
    /// A new, empty session with a new id.
    pub(crate) fn fresh(origin: Origin, now: OffsetDateTime) -> Self {
        State::empty(SessionId::generate(), origin, now)
    }

    /// The session loaded from `record`.
    pub(crate) fn loaded(id: SessionId, old_key: bool, record: Record, now: OffsetDateTime) -> Self {
        let origin = Origin::Valid {
            id: id.clone(),
            old_key,
        };
        State {
            stored: Some(id.clone()),
            tracked: Tracked::new(record.data),
            created: record.created,
            last_accessed: Some(record.accessed),
            stored_accessed: Some(record.accessed),
            presented: true,
            ..State::empty(id, origin, now)
        }
    }

    /// An empty session under `id` that nothing has happened to yet, with
    /// no record.
    fn empty(id: SessionId, origin: Origin, now: OffsetDateTime) -> Self {
        State {
            id,
            origin,
            stored: None,
            tracked: Tracked::default(),
            created: now,
            accessed: now,
            last_accessed: None,
            stored_accessed: None,
            ended: Vec::new(),
            deleted: false,
            epoch: 0,
            save_requested: false,
            touch_requested: false,
            expiry_changed: false,
            presented: false,
            confirm_due: false,
            wrote: false,
            client_value: None,
        }
    }

    /// Whether the session is live (not deleted in this request).
    pub(crate) fn is_live(&self) -> bool {
        !self.deleted
    }

    pub(crate) fn set(&mut self, key: String, value: serde_json::Value, saver: Saver) {
        if self.is_live() {
            self.tracked.set(key, value, saver);
        }
    }

    pub(crate) fn remove(&mut self, key: &str, saver: Saver) -> Option<serde_json::Value> {
        if self.is_live() {
            self.tracked.remove(key, saver)
        } else {
            None
        }
    }

    pub(crate) fn clear(&mut self, saver: Saver) {
        if self.is_live() {
            self.tracked.clear(saver);
        }
    }

    /// `touch()`: refresh the timestamps at the next save.
    pub(crate) fn request_touch(&mut self) {
        if self.is_live() {
            self.touch_requested = true;
        }
    }

    pub(crate) fn request_save(&mut self) {
        if self.is_live() {
            self.save_requested = true;
        }
    }

    /// The records this session has: the ids to delete when it ends.
    fn end_records(&mut self) {
        if let Some(stored) = self.stored.take() {
            self.ended.push(stored);
        }
    }

    /// `delete()`: the record goes whatever the response, and the session
    /// is over for the rest of the request.
    pub(crate) fn delete(&mut self) {
        self.end_records();
        self.tracked = Tracked::default();
        self.deleted = true;
        self.save_requested = false;
        self.touch_requested = false;
        self.epoch += 1;
    }

    /// `invalidate()`: the record goes whatever the response; a new, empty
    /// session with a new id takes its place and is saved if modified.
    /// After `delete()` (or the record vanished) the session is over for the
    /// request: nothing to invalidate, and no new session starts.
    pub(crate) fn invalidate(&mut self, now: OffsetDateTime) {
        if !self.is_live() {
            return;
        }
        self.end_records();
        self.id = SessionId::generate();
        self.tracked = Tracked::default();
        self.created = now;
        self.accessed = now;
        self.last_accessed = None;
        self.stored_accessed = None;
        self.deleted = false;
        self.save_requested = false;
        self.presented = false;
        self.confirm_due = false;
        self.epoch += 1;
    }

    /// `cycle_id()`: a new id for the same data; the record moves to it at
    /// the end of the request (implies a save).
    pub(crate) fn cycle(&mut self) {
        if !self.is_live() {
            return;
        }
        self.id = SessionId::generate();
        self.save_requested = true;
    }

    /// The session was found deleted by another request while this one
    /// wrote: logged out.
    pub(crate) fn vanished(&mut self) {
        self.stored = None;
        self.delete();
    }
}
