//! What stores keep: a session's record, and the change set a save hands them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::id::StoreKey;

/// The data key a session's owner is kept under (see
/// [`Session::set_owner`](crate::Session::set_owner)): a JSON string, the
/// application's user id. It is part of the session's data, so a store
/// writes it with the save that sets it, moves it with
/// [`cycle`](crate::SessionStore::cycle) and forgets it with the record; a
/// store that lists a user's sessions
/// ([`list_owned`](crate::SessionStore::list_owned)) finds them by it.
///
/// ```
/// assert_eq!(carafe::store::OWNER_KEY, "carafe.owner");
/// ```
pub const OWNER_KEY: &str = "carafe.owner";

/// The owner named in `data`, if `data` holds one (a string under
/// [`OWNER_KEY`]).
pub(crate) fn owner_of(data: &Data) -> Option<&str> {
    data.get(OWNER_KEY).and_then(Value::as_str)
}

/// A session's data: key to JSON value.
pub type Data = serde_json::Map<String, Value>;

/// A stored session.
///
/// ```
/// use carafe::store::Record;
/// use time::macros::datetime;
/// let t = datetime!(2030-01-01 0:00 UTC);
/// let record = Record { data: Default::default(), created: t, accessed: t, expires: t };
/// let json = serde_json::to_string(&record)?;
/// assert_eq!(serde_json::from_str::<Record>(&json)?, record);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The session's data.
    pub data: Data,
    /// When the session was created (Beaker's `_creation_time`).
    #[serde(with = "time::serde::timestamp")]
    pub created: OffsetDateTime,
    /// When the session was last accessed (Beaker's `_accessed_time`).
    #[serde(with = "time::serde::timestamp")]
    pub accessed: OffsetDateTime,
    /// When the store may forget the record: the earlier of the idle timeout
    /// and the absolute lifetime.
    #[serde(with = "time::serde::timestamp")]
    pub expires: OffsetDateTime,
}

impl Record {
    /// Removes the keys that start with `prefix` and returns them with
    /// their values: what a store's
    /// [`take_prefixed`](crate::SessionStore::take_prefixed) does to a
    /// record it holds in memory.
    ///
    /// ```
    /// # use carafe::store::Record;
    /// # let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let mut record = Record { data: Default::default(), created: t, accessed: t, expires: t };
    /// record.data.insert("_flash.1".into(), 1.into());
    /// record.data.insert("user".into(), 2.into());
    /// let taken = record.take_prefixed("_flash.");
    /// assert_eq!(taken.keys().collect::<Vec<_>>(), ["_flash.1"]);
    /// assert_eq!(record.data.keys().collect::<Vec<_>>(), ["user"]);
    /// ```
    pub fn take_prefixed(&mut self, prefix: &str) -> Data {
        take_prefixed(&mut self.data, prefix)
    }

    /// The session's owner: the string under [`OWNER_KEY`], if any.
    ///
    /// ```
    /// use carafe::store::{Record, OWNER_KEY};
    /// let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let mut record = Record { data: Default::default(), created: t, accessed: t, expires: t };
    /// assert_eq!(record.owner(), None);
    /// record.data.insert(OWNER_KEY.into(), "user-7".into());
    /// assert_eq!(record.owner(), Some("user-7"));
    /// ```
    #[must_use]
    pub fn owner(&self) -> Option<&str> {
        owner_of(&self.data)
    }
}

/// Removes the keys of `data` that start with `prefix` and returns them.
pub(crate) fn take_prefixed(data: &mut Data, prefix: &str) -> Data {
    let keys: Vec<String> = data
        .keys()
        .filter(|key| key.starts_with(prefix))
        .cloned()
        .collect();
    let mut taken = Data::new();
    for key in keys {
        if let Some(value) = data.remove(&key) {
            taken.insert(key, value);
        }
    }
    taken
}

/// One live session of an owner, as
/// [`SessionStore::list_owned`](crate::SessionStore::list_owned) answers it:
/// the key the record is filed under and its timestamps.
///
/// ```
/// use carafe::store::{OwnedRecord, Record};
/// let t = time::OffsetDateTime::UNIX_EPOCH;
/// let record = Record { data: Default::default(), created: t, accessed: t, expires: t };
/// let key = carafe::SessionId::generate().store_key();
/// let owned = OwnedRecord::new(key.clone(), &record);
/// assert_eq!((owned.key, owned.expires), (key, t));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The key the record is filed under.
    pub key: StoreKey,
    /// When the session was created.
    pub created: OffsetDateTime,
    /// When the session was last accessed, as stored.
    pub accessed: OffsetDateTime,
    /// When the session expires, as stored.
    pub expires: OffsetDateTime,
}

impl OwnedRecord {
    /// The entry for `record`, filed under `key`.
    ///
    /// ```
    /// # use carafe::store::{OwnedRecord, Record};
    /// # let t = time::OffsetDateTime::UNIX_EPOCH;
    /// # let record = Record { data: Default::default(), created: t, accessed: t, expires: t };
    /// let owned = OwnedRecord::new(carafe::SessionId::generate().store_key(), &record);
    /// assert_eq!(owned.created, record.created);
    /// ```
    #[must_use]
    pub fn new(key: StoreKey, record: &Record) -> Self {
        OwnedRecord {
            key,
            created: record.created,
            accessed: record.accessed,
            expires: record.expires,
        }
    }
}

/// Whether a save makes a new record or changes an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    /// A new session (or one whose id was just cycled). The store writes a
    /// new record; if one already exists under the key it answers
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) and changes
    /// nothing.
    Create,
    /// A session loaded from the store. The store merges the change into the
    /// record it holds now; if there is none (the session was deleted
    /// meanwhile, for example by a logout in another request) it writes
    /// nothing and answers [`SaveOutcome::Missing`].
    Update,
}

/// What a save hands the store: the keys set and removed, and the
/// timestamps.
///
/// For [`SaveKind::Create`], `set` is the whole data and `removed` is empty.
/// For [`SaveKind::Update`], `set` and `removed` hold only the keys this
/// request changed, so that two overlapping requests that change different
/// keys both keep their changes (for the same key, the last write wins).
/// An update with both empty only refreshes the timestamps (a "touch").
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Create or update.
    pub kind: SaveKind,
    /// Keys written, with their new values.
    pub set: Data,
    /// Keys removed.
    pub removed: Vec<String>,
    /// The session's creation time.
    pub created: OffsetDateTime,
    /// The new accessed time.
    pub accessed: OffsetDateTime,
    /// The new expiry time.
    pub expires: OffsetDateTime,
}

impl Change {
    /// True when the change only refreshes the timestamps.
    ///
    /// ```
    /// # use carafe::store::{Change, SaveKind};
    /// # let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let touch = Change { kind: SaveKind::Update, set: Default::default(), removed: vec![],
    ///                      created: t, accessed: t, expires: t };
    /// assert!(touch.is_touch());
    /// ```
    #[must_use]
    pub fn is_touch(&self) -> bool {
        self.kind == SaveKind::Update && self.set.is_empty() && self.removed.is_empty()
    }

    /// Applies the change to `record` (for stores that merge in memory).
    ///
    /// ```
    /// # use carafe::store::{Change, Record, SaveKind};
    /// # let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let mut record = Record { data: Default::default(), created: t, accessed: t, expires: t };
    /// record.data.insert("a".into(), 1.into());
    /// record.data.insert("b".into(), 2.into());
    /// let mut set = carafe::store::Data::new();
    /// set.insert("c".into(), 3.into());
    /// let change = Change { kind: SaveKind::Update, set, removed: vec!["a".into()],
    ///                       created: t, accessed: t, expires: t };
    /// change.apply(&mut record);
    /// assert_eq!(record.data.keys().collect::<Vec<_>>(), ["b", "c"]);
    /// ```
    pub fn apply(&self, record: &mut Record) {
        for key in &self.removed {
            record.data.remove(key);
        }
        for (key, value) in &self.set {
            record.data.insert(key.clone(), value.clone());
        }
        record.accessed = self.accessed;
        record.expires = self.expires;
    }

    /// The record a [`SaveKind::Create`] change describes.
    ///
    /// ```
    /// # use carafe::store::{Change, SaveKind};
    /// # let t = time::OffsetDateTime::UNIX_EPOCH;
    /// let change = Change { kind: SaveKind::Create, set: Default::default(), removed: vec![],
    ///                       created: t, accessed: t, expires: t };
    /// assert_eq!(change.to_record().created, t);
    /// ```
    #[must_use]
    pub fn to_record(&self) -> Record {
        Record {
            data: self.set.clone(),
            created: self.created,
            accessed: self.accessed,
            expires: self.expires,
        }
    }
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The record was written.
    Saved,
    /// An update found no record (deleted or expired meanwhile) and wrote
    /// nothing: a deleted session is never brought back.
    Missing,
}
