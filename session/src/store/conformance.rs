//! The store conformance suite: checks that a [`SessionStore`] keeps the
//! contract documented on the trait.
//!
//! Compiled only with the `conformance` feature: enable it where you run
//! the suite, in `[dev-dependencies]`:
//!
//! ```toml
//! [dev-dependencies]
//! carafe = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! **This is test-support code.** Every check panics, with a message naming
//! the store and the rule, on the first violation it finds, and a store error
//! where the rule expects success is a violation too. Call it from a test,
//! never from a server.
//!
//! Every store carafe ships runs [`run`] (or [`run_with`]) from its tests,
//! and a store written outside carafe should too:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In a `#[tokio::test]`:
//! carafe::store::conformance::run(|| async { carafe::MemoryStore::new() }).await;
//! # });
//! ```
//!
//! `run` calls `make` once per check and expects a fresh, empty store each
//! time; a store backed by a shared server (Redis, PostgreSQL) should hand
//! out a new key prefix or table on every call. A store whose backend
//! expires records by itself passes [`Options::native_expiry`] to
//! [`run_with`]. Each check is also a public function taking
//! `&dyn SessionStore`, so a store with a documented exception can run the
//! checks that apply to it:
//!
//! ```
//! use carafe::store::conformance;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = carafe::MemoryStore::new();
//! conformance::create_then_load(&store).await;
//! conformance::update_merges(&store).await;
//! # });
//! ```
//!
//! Records the checks write expire a day or more after the wall-clock time
//! of the run, so that stores which expire records natively keep them for
//! the whole run. All timestamps are whole seconds, as the runtime's are.
//!
//! Not covered: the NUL character (`"\u{0}"`) inside strings, which
//! PostgreSQL's `jsonb` cannot hold.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::error::StoreError;
use crate::id::{SessionId, StoreKey};
use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome, OWNER_KEY};
use crate::store::SessionStore;

/// How many overlapping updates the concurrency checks run.
const OVERLAPPING: usize = 50;

/// What a store may do differently from the strictest reading of the
/// contract. The default is the strict reading.
///
/// ```
/// let options = carafe::store::conformance::Options::new().native_expiry(true);
/// assert!(options.has_native_expiry());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    native_expiry: bool,
    record_limit: Option<usize>,
    no_owners: bool,
}

impl Options {
    /// The strict reading of the contract.
    ///
    /// ```
    /// let options = carafe::store::conformance::Options::new();
    /// assert!(!options.has_native_expiry());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend expires records by itself (Redis keys with a TTL, for
    /// example), so [`delete_expired`](SessionStore::delete_expired) may
    /// return 0 and leave expired records for the backend to drop. It must
    /// still succeed, must never remove a record that has not expired, and
    /// the count it returns must match what it removed. See
    /// [`delete_expired_native`].
    ///
    /// ```
    /// let options = carafe::store::conformance::Options::new().native_expiry(true);
    /// assert!(options.has_native_expiry());
    /// ```
    #[must_use]
    pub fn native_expiry(mut self, yes: bool) -> Self {
        self.native_expiry = yes;
        self
    }

    /// The store's record size limit, in bytes, for
    /// [`oversized_save_is_refused`] (default
    /// [`DEFAULT_MAX_RECORD_BYTES`](crate::store::DEFAULT_MAX_RECORD_BYTES)).
    /// A store configured with another limit (`max_record_bytes`) passes the
    /// same number here; the other checks need at least 256 KiB.
    ///
    /// ```
    /// let options = carafe::store::conformance::Options::new().record_limit(64 * 1024);
    /// assert_eq!(options.limit(), 64 * 1024);
    /// ```
    #[must_use]
    pub fn record_limit(mut self, bytes: usize) -> Self {
        self.record_limit = Some(bytes);
        self
    }

    /// The record size limit the suite assumes (see
    /// [`Options::record_limit`]).
    ///
    /// ```
    /// let options = carafe::store::conformance::Options::new();
    /// assert_eq!(options.limit(), carafe::store::DEFAULT_MAX_RECORD_BYTES);
    /// ```
    #[must_use]
    pub fn limit(&self) -> usize {
        self.record_limit
            .unwrap_or(crate::store::DEFAULT_MAX_RECORD_BYTES)
    }

    /// The store does not implement
    /// [`list_owned`](SessionStore::list_owned) (it answers
    /// [`StoreError::Unsupported`], the trait's default): the checks of a
    /// user's sessions are skipped. Every store carafe ships runs them.
    ///
    /// ```
    /// let options = carafe::store::conformance::Options::new().without_owners();
    /// assert!(!options.has_owners());
    /// ```
    #[must_use]
    pub fn without_owners(mut self) -> Self {
        self.no_owners = true;
        self
    }

    /// Whether the checks of a user's sessions run (unless
    /// [`Options::without_owners`]).
    ///
    /// ```
    /// assert!(carafe::store::conformance::Options::new().has_owners());
    /// ```
    #[must_use]
    pub fn has_owners(&self) -> bool {
        !self.no_owners
    }

    /// Whether [`Options::native_expiry`] is set.
    ///
    /// ```
    /// assert!(!carafe::store::conformance::Options::default().has_native_expiry());
    /// ```
    #[must_use]
    pub fn has_native_expiry(&self) -> bool {
        self.native_expiry
    }
}

/// Runs every check with the strict [`Options`], each on a fresh store from
/// `make`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::run(|| async { carafe::MemoryStore::new() }).await;
/// # });
/// ```
///
/// # Panics
///
/// On the first rule the store breaks, with a message naming the store and
/// the rule (this is test-support code).
pub async fn run<S, F, Fut>(make: F)
where
    S: SessionStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    run_with(Options::new(), make).await;
}

/// Runs every check with the given [`Options`], each on a fresh store from
/// `make`.
///
/// ```
/// use carafe::store::conformance::{run_with, Options};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // A store that expires records natively would pass `native_expiry(true)`.
/// run_with(Options::new(), || async { carafe::MemoryStore::new() }).await;
/// # });
/// ```
///
/// # Panics
///
/// On the first rule the store breaks, with a message naming the store and
/// the rule (this is test-support code).
pub async fn run_with<S, F, Fut>(options: Options, mut make: F)
where
    S: SessionStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    name_is_set(&make().await).await;
    load_unknown_is_none(&make().await).await;
    create_then_load(&make().await).await;
    create_over_existing_conflicts(&make().await).await;
    update_merges(&make().await).await;
    update_missing_is_not_resurrected(&make().await).await;
    update_after_delete_is_missing(&make().await).await;
    delete_removes(&make().await).await;
    touch_changes_only_timestamps(&make().await).await;
    if options.native_expiry {
        delete_expired_native(&make().await).await;
    } else {
        delete_expired_exact(&make().await).await;
    }
    overlapping_updates_keep_all_keys(&make().await).await;
    overlapping_updates_and_removals(&make().await).await;
    values_round_trip(&make().await).await;
    keys_are_isolated(&make().await).await;
    cycle_moves_record(&make().await).await;
    cycle_missing_is_missing(&make().await).await;
    cycle_onto_existing_conflicts(&make().await).await;
    cycle_racing_delete_never_resurrects(&make().await).await;
    cycle_racing_update(&make().await).await;
    oversized_save_is_refused(&make().await, options.limit()).await;
    take_prefixed_takes_once(&make().await).await;
    overlapping_takes_share_out_each_key(&make().await).await;
    if !options.no_owners {
        owned_are_listed_by_owner(&make().await).await;
        owner_follows_updates(&make().await).await;
        owner_moves_with_cycle(&make().await).await;
        deleted_owned_are_not_listed(&make().await).await;
        expired_owned_are_not_listed(&make().await).await;
    }
}

// ---------------------------------------------------------------------------
// helpers

/// The wall-clock time, whole seconds.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

fn key() -> StoreKey {
    SessionId::generate().store_key()
}

/// One check run on one store: each method asserts one thing and panics,
/// naming the store and the check, when it does not hold.
#[derive(Clone, Copy)]
struct Check<'a> {
    store: &'a dyn SessionStore,
    name: &'static str,
}

impl<'a> Check<'a> {
    fn new(store: &'a dyn SessionStore, name: &'static str) -> Self {
        Check { store, name }
    }

    #[track_caller]
    fn fail(self, message: std::fmt::Arguments<'_>) -> ! {
        panic!(
            "session store {:?} (name {:?}) fails conformance check `{}`: {message}",
            self.store,
            self.store.name(),
            self.name
        )
    }

    /// The value of a call that must succeed.
    #[track_caller]
    fn ok<T>(self, what: &str, result: Result<T, StoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(err) => self.fail(format_args!("{what} failed: {err}")),
        }
    }

    #[track_caller]
    fn eq<T: PartialEq + std::fmt::Debug>(self, what: &str, got: T, want: T) {
        if got != want {
            self.fail(format_args!("{what}\n   got: {got:?}\n  want: {want:?}"));
        }
    }

    /// A save or a cycle answered [`SaveOutcome::Saved`].
    #[track_caller]
    fn saved(self, what: &str, got: SaveOutcome) {
        self.eq(what, got, SaveOutcome::Saved);
    }

    /// A save or a cycle answered [`SaveOutcome::Missing`].
    #[track_caller]
    fn missing(self, what: &str, got: SaveOutcome) {
        self.eq(what, got, SaveOutcome::Missing);
    }

    /// A call that must answer [`StoreError::Conflict`]; `what` says what
    /// was asked.
    #[track_caller]
    fn conflict<T: std::fmt::Debug>(self, what: &str, result: Result<T, StoreError>) {
        match result {
            Err(StoreError::Conflict) => {}
            other => self.fail(format_args!("{what} answered {other:?}, want Err(Conflict)")),
        }
    }

    async fn load(self, key: &StoreKey) -> Option<Record> {
        self.ok("load", self.store.load(key).await)
    }

    /// A call that must answer [`StoreError::TooLarge`] naming `limit`.
    #[track_caller]
    fn too_large<T: std::fmt::Debug>(self, what: &str, result: Result<T, StoreError>, limit: usize) {
        match result {
            Err(StoreError::TooLarge { size, limit: l }) if l == limit && size > limit => {}
            other => self.fail(format_args!(
                "{what} answered {other:?}, want Err(TooLarge {{ size: more than {limit}, limit: {limit} }})"
            )),
        }
    }

    /// `key` loads `None`.
    async fn absent(self, what: &str, key: &StoreKey) {
        self.eq(what, self.load(key).await, None);
    }

    /// `key` loads `want`.
    async fn holds(self, what: &str, key: &StoreKey, want: &Record) {
        self.eq(what, self.load(key).await.as_ref(), Some(want));
    }

    async fn save(self, what: &str, key: &StoreKey, change: &Change) -> SaveOutcome {
        self.ok(what, self.store.save(key, change).await)
    }

    /// Saves a create and checks that it answered `Saved`.
    async fn create(self, key: &StoreKey, change: &Change) {
        let outcome = self.save("create", key, change).await;
        self.saved("outcome of a create", outcome);
    }

    async fn cycle(self, what: &str, from: &StoreKey, to: &StoreKey, change: &Change) -> SaveOutcome {
        self.ok(what, self.store.cycle(from, to, change).await)
    }

    async fn delete(self, what: &str, key: &StoreKey) {
        self.ok(what, self.store.delete(key).await);
    }

    async fn delete_expired(self, what: &str, now: OffsetDateTime) -> u64 {
        self.ok(what, self.store.delete_expired(now).await)
    }
}

fn data(pairs: &[(&str, Value)]) -> Data {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn create(set: Data, created: OffsetDateTime, expires: OffsetDateTime) -> Change {
    Change {
        kind: SaveKind::Create,
        set,
        removed: Vec::new(),
        created,
        accessed: created,
        expires,
    }
}

fn update(
    set: Data,
    removed: &[&str],
    created: OffsetDateTime,
    accessed: OffsetDateTime,
    expires: OffsetDateTime,
) -> Change {
    Change {
        kind: SaveKind::Update,
        set,
        removed: removed.iter().map(|k| (*k).to_owned()).collect(),
        created,
        accessed,
        expires,
    }
}

/// A create at `t` that expires a day later.
fn create_at(set: Data, t: OffsetDateTime) -> Change {
    create(set, t, t + Duration::days(1))
}

/// An update that sets and removes nothing.
fn touch(created: OffsetDateTime, accessed: OffsetDateTime, expires: OffsetDateTime) -> Change {
    update(Data::new(), &[], created, accessed, expires)
}

/// Polls all futures concurrently on the current task, so that their awaits
/// interleave, and returns their outputs in order. (The checks take
/// `&dyn SessionStore`, which cannot be moved into spawned tasks.)
async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------
// checks

/// [`SessionStore::name`] is a short, non-empty, printable name.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::name_is_set(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn name_is_set(store: &dyn SessionStore) {
    let name = store.name();
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        Check::new(store, "name_is_set").fail(format_args!(
            "name {name:?} should be 1 to 32 printable ASCII characters"
        ));
    }
}

/// Loading a key that was never saved answers `None`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::load_unknown_is_none(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn load_unknown_is_none(store: &dyn SessionStore) {
    let c = Check::new(store, "load_unknown_is_none");
    c.absent("load of a key never saved", &key()).await;
}

/// A create followed by a load gives back the record, data and timestamps
/// (whole seconds) equal; an empty session too.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::create_then_load(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn create_then_load(store: &dyn SessionStore) {
    let c = Check::new(store, "create_then_load");
    let t = now();
    let k = key();
    let change = Change {
        kind: SaveKind::Create,
        set: data(&[("user", json!("ada")), ("n", json!(42))]),
        removed: Vec::new(),
        created: t - Duration::seconds(7),
        accessed: t,
        expires: t + Duration::days(1),
    };
    c.create(&k, &change).await;
    c.holds("record loaded after a create", &k, &change.to_record())
        .await;

    let empty = key();
    let change = create_at(Data::new(), t);
    c.create(&empty, &change).await;
    c.holds("empty record loaded after a create", &empty, &change.to_record())
        .await;
}

/// A create over an existing record answers [`StoreError::Conflict`] and
/// leaves the existing record as it was.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::create_over_existing_conflicts(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn create_over_existing_conflicts(store: &dyn SessionStore) {
    let c = Check::new(store, "create_over_existing_conflicts");
    let t = now();
    let k = key();
    let first = create_at(data(&[("owner", json!("first"))]), t);
    c.create(&k, &first).await;

    let second = create(
        data(&[("owner", json!("second")), ("extra", json!(true))]),
        t + Duration::seconds(5),
        t + Duration::days(2),
    );
    c.conflict("a create over an existing record", store.save(&k, &second).await);
    let what = "record after a conflicting create (must be unchanged)";
    c.holds(what, &k, &first.to_record()).await;
}

/// An update writes the keys in `set`, removes the keys in `removed`, leaves
/// every other key alone, replaces `accessed` and `expires`, and keeps
/// `created` (even when the change carries another `created`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::update_merges(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn update_merges(store: &dyn SessionStore) {
    let c = Check::new(store, "update_merges");
    let t = now();
    let k = key();
    let initial = create(
        data(&[
            ("keep", json!("kept")),
            ("overwrite", json!(1)),
            ("drop", json!([1, 2, 3])),
            ("also_keep", json!({"nested": true})),
        ]),
        t,
        t + Duration::days(1),
    );
    c.create(&k, &initial).await;

    let change = update(
        data(&[("overwrite", json!(2)), ("new", json!("fresh"))]),
        &["drop", "never_there"],
        t + Duration::seconds(99),
        t + Duration::minutes(3),
        t + Duration::days(3),
    );
    let outcome = c.save("update", &k, &change).await;
    c.saved("outcome of an update", outcome);

    let want = Record {
        data: data(&[
            ("keep", json!("kept")),
            ("overwrite", json!(2)),
            ("also_keep", json!({"nested": true})),
            ("new", json!("fresh")),
        ]),
        created: t,
        accessed: t + Duration::minutes(3),
        expires: t + Duration::days(3),
    };
    c.holds("record after a merging update", &k, &want).await;
}

/// An update of a record that does not exist answers
/// [`SaveOutcome::Missing`] and writes nothing.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::update_missing_is_not_resurrected(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn update_missing_is_not_resurrected(store: &dyn SessionStore) {
    let c = Check::new(store, "update_missing_is_not_resurrected");
    let t = now();
    let k = key();
    for change in [
        update(data(&[("a", json!(1))]), &[], t, t, t + Duration::days(1)),
        update(Data::new(), &["a"], t, t, t + Duration::days(1)),
        touch(t, t, t + Duration::days(1)),
    ] {
        let outcome = c.save("update", &k, &change).await;
        c.missing("outcome of an update of a record never created", outcome);
        c.absent("load after an update of a record never created", &k)
            .await;
    }
}

/// After a delete, an update answers [`SaveOutcome::Missing`] and the record
/// stays deleted: a deleted session is never brought back.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::update_after_delete_is_missing(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn update_after_delete_is_missing(store: &dyn SessionStore) {
    let c = Check::new(store, "update_after_delete_is_missing");
    let t = now();
    let k = key();
    let record = create_at(data(&[("user", json!("ada"))]), t);
    c.create(&k, &record).await;
    c.delete("delete", &k).await;

    let change = update(
        data(&[("user", json!("mallory"))]),
        &[],
        t,
        t + Duration::minutes(1),
        t + Duration::days(1),
    );
    let outcome = c.save("update", &k, &change).await;
    c.missing("outcome of an update after a delete", outcome);
    let touch = touch(t, t + Duration::minutes(2), t + Duration::days(1));
    let outcome = c.save("touch", &k, &touch).await;
    c.missing("outcome of a touch after a delete", outcome);
    c.absent("load after delete then update", &k).await;
}

/// A delete removes the record; deleting a missing record succeeds.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::delete_removes(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn delete_removes(store: &dyn SessionStore) {
    let c = Check::new(store, "delete_removes");
    let t = now();
    let k = key();
    c.create(&k, &create_at(data(&[("a", json!(1))]), t)).await;
    c.delete("delete", &k).await;
    c.absent("load after a delete", &k).await;
    c.delete("second delete of the same key", &k).await;
    c.delete("delete of a key never saved", &key()).await;

    // The key can be used again after a delete.
    let again = create_at(data(&[("b", json!(2))]), t);
    c.create(&k, &again).await;
    c.holds("load after a create on a deleted key", &k, &again.to_record())
        .await;
}

/// A touch (an update with nothing set or removed) replaces `accessed` and
/// `expires` and changes nothing else.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::touch_changes_only_timestamps(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn touch_changes_only_timestamps(store: &dyn SessionStore) {
    let c = Check::new(store, "touch_changes_only_timestamps");
    let t = now();
    let k = key();
    let initial = create(
        data(&[("a", json!(1)), ("b", json!({"c": [true, null]}))]),
        t,
        t + Duration::days(1),
    );
    c.create(&k, &initial).await;
    let touch = touch(
        t + Duration::seconds(30),
        t + Duration::minutes(10),
        t + Duration::days(2),
    );
    let outcome = c.save("touch", &k, &touch).await;
    c.saved("outcome of a touch", outcome);
    let want = Record {
        accessed: t + Duration::minutes(10),
        expires: t + Duration::days(2),
        ..initial.to_record()
    };
    c.holds("record after a touch", &k, &want).await;
}

/// Records around a cutoff for the expiry checks.
struct ExpiryFixture {
    /// Keys whose records expire at or before the cutoff.
    expired: Vec<StoreKey>,
    /// Keys whose records expire after it, with those records.
    live: Vec<(StoreKey, Record)>,
}

impl ExpiryFixture {
    /// Creates records around `now` (the boundary included).
    async fn around(c: Check<'_>, now: OffsetDateTime) -> Self {
        let created = now - Duration::days(1);
        let mut fixture = ExpiryFixture {
            expired: Vec::new(),
            live: Vec::new(),
        };
        for (offset, is_expired) in [
            (Duration::hours(-1), true),
            (Duration::seconds(-1), true),
            (Duration::ZERO, true),
            (Duration::seconds(1), false),
            (Duration::days(1), false),
        ] {
            let k = key();
            let change = create(
                data(&[("offset", json!(offset.whole_seconds()))]),
                created,
                now + offset,
            );
            c.create(&k, &change).await;
            if is_expired {
                fixture.expired.push(k);
            } else {
                fixture.live.push((k, change.to_record()));
            }
        }
        fixture
    }

    /// Every record that has not expired is as it was created.
    async fn live_unchanged(&self, c: Check<'_>) {
        for (k, record) in &self.live {
            let what = "a record with expires > now after delete_expired (must be unchanged)";
            c.holds(what, k, record).await;
        }
    }
}

/// [`delete_expired(now)`](SessionStore::delete_expired) removes exactly the
/// records whose `expires` is at or before `now`, and returns how many it
/// removed; a second call removes nothing and returns 0.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::delete_expired_exact(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn delete_expired_exact(store: &dyn SessionStore) {
    let c = Check::new(store, "delete_expired_exact");
    // Far enough ahead that every record is alive by the wall clock.
    let cutoff = now() + Duration::days(2);
    let fixture = ExpiryFixture::around(c, cutoff).await;

    let removed = c.delete_expired("delete_expired", cutoff).await;
    let expired = fixture.expired.len() as u64;
    c.eq("count returned by delete_expired", removed, expired);
    for k in &fixture.expired {
        let loaded = c.load(k).await;
        if loaded.is_some() {
            c.fail(format_args!(
                "a record with expires <= now survived delete_expired: {loaded:?}"
            ));
        }
    }
    fixture.live_unchanged(c).await;
    let again = c.delete_expired("second delete_expired", cutoff).await;
    c.eq("count returned by a second delete_expired", again, 0);
}

/// The rule for stores that expire records natively (see
/// [`Options::native_expiry`]): [`delete_expired`](SessionStore::delete_expired)
/// succeeds, never removes a record that has not expired, and returns the
/// number of records it did remove (0 if it leaves expiry to the backend).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::delete_expired_native(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn delete_expired_native(store: &dyn SessionStore) {
    let c = Check::new(store, "delete_expired_native");
    let cutoff = now() + Duration::days(2);
    let fixture = ExpiryFixture::around(c, cutoff).await;

    let removed = c.delete_expired("delete_expired", cutoff).await;
    let mut gone = 0u64;
    for k in &fixture.expired {
        if c.load(k).await.is_none() {
            gone += 1;
        }
    }
    let what = "count returned by delete_expired vs. expired records actually removed";
    c.eq(what, removed, gone);
    fixture.live_unchanged(c).await;
}

/// Runs the overlapping-update check; `removing` of the updates also remove
/// a key of their own.
async fn overlapping(c: Check<'_>, removing: usize) {
    let t = now();
    let k = key();
    let mut initial = data(&[("untouched", json!("still here"))]);
    for i in 0..removing {
        initial.insert(format!("remove-{i}"), json!(i));
    }
    c.create(&k, &create_at(initial, t)).await;

    let changes: Vec<Change> = (0..OVERLAPPING)
        .map(|i| {
            let removed = if i < removing {
                vec![format!("remove-{i}")]
            } else {
                Vec::new()
            };
            Change {
                removed,
                ..update(
                    data(&[(&format!("key-{i}"), json!(i))]),
                    &[],
                    t,
                    t + Duration::seconds(i as i64),
                    t + Duration::days(1),
                )
            }
        })
        .collect();
    let futures = changes
        .iter()
        .map(|change| {
            let k = &k;
            Box::pin(async move { c.store.save(k, change).await })
                as Pin<Box<dyn Future<Output = _> + Send + '_>>
        })
        .collect();
    for (i, result) in join_all(futures).await.into_iter().enumerate() {
        let outcome = c.ok(&format!("overlapping update {i}"), result);
        c.saved("outcome of an overlapping update", outcome);
    }

    let Some(record) = c.load(&k).await else {
        c.fail(format_args!("the record vanished after overlapping updates"));
    };
    let get = |name: &str| record.data.get(name);
    let missing: Vec<String> = (0..OVERLAPPING)
        .map(|i| format!("key-{i}"))
        .filter(|name| get(name).is_none())
        .collect();
    if !missing.is_empty() {
        c.fail(format_args!(
            "{} of {OVERLAPPING} overlapping updates lost their key (lost: {missing:?})",
            missing.len()
        ));
    }
    for i in 0..OVERLAPPING {
        let what = format!("value of key-{i} after overlapping updates");
        c.eq(&what, get(&format!("key-{i}")), Some(&json!(i)));
    }
    let resurrected: Vec<&String> = record
        .data
        .keys()
        .filter(|name| name.starts_with("remove-"))
        .collect();
    if !resurrected.is_empty() {
        c.fail(format_args!(
            "keys removed by overlapping updates are back: {resurrected:?}"
        ));
    }
    let still_here = json!("still here");
    c.eq("a key no update touched", get("untouched"), Some(&still_here));
    let keys = record.data.len();
    c.eq("number of keys after overlapping updates", keys, OVERLAPPING + 1);
    c.eq("created after overlapping updates", record.created, t);
}

/// 50 overlapping updates of one session, each setting its own key, keep all
/// 50 keys (the merge is atomic per save).
///
/// The updates run concurrently on the calling task, so that their awaits
/// interleave.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::overlapping_updates_keep_all_keys(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn overlapping_updates_keep_all_keys(store: &dyn SessionStore) {
    overlapping(Check::new(store, "overlapping_updates_keep_all_keys"), 0).await;
}

/// 50 overlapping updates of one session, each setting its own key and half
/// of them also removing a key of their own: every set key is present and
/// every removed key is gone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::overlapping_updates_and_removals(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn overlapping_updates_and_removals(store: &dyn SessionStore) {
    let c = Check::new(store, "overlapping_updates_and_removals");
    overlapping(c, OVERLAPPING / 2).await;
}

/// [`SessionStore::take_prefixed`] removes and answers exactly the keys
/// with the prefix, once; the rest of the record, its timestamps included,
/// is left as it was; an unknown key answers nothing and creates nothing.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::take_prefixed_takes_once(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn take_prefixed_takes_once(store: &dyn SessionStore) {
    let c = Check::new(store, "take_prefixed_takes_once");
    let t = now();
    let k = key();
    // The owner key is among them: a take never touches the owner.
    let kept = data(&[
        ("user", json!("ada")),
        (crate::record::OWNER_KEY, json!("ada")),
        ("_f", json!(1)),
        ("_fx.1", json!(2)),
        ("x_f.1", json!(3)),
    ]);
    let mut initial = kept.clone();
    initial.insert("_f.1".into(), json!({"level": "info", "body": "saved"}));
    initial.insert("_f.2".into(), json!([1, "two", null]));
    c.create(&k, &create_at(initial.clone(), t)).await;

    let taken = c.ok("take", store.take_prefixed(&k, "_f.").await);
    let want: Data = initial
        .iter()
        .filter(|(n, _)| n.starts_with("_f."))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    c.eq("what the first take answers", &taken, &want);
    let rest = Record {
        data: kept,
        ..create_at(Data::new(), t).to_record()
    };
    c.holds(
        "the record after the take (other keys and timestamps untouched)",
        &k,
        &rest,
    )
    .await;
    let again = c.ok("second take", store.take_prefixed(&k, "_f.").await);
    c.eq("what a second take answers", again, Data::new());
    c.holds("the record after a take that found nothing", &k, &rest)
        .await;

    let unknown = key();
    let nothing = c.ok(
        "take from an unknown key",
        store.take_prefixed(&unknown, "_f.").await,
    );
    c.eq("what a take from an unknown key answers", nothing, Data::new());
    c.absent("an unknown key after a take", &unknown).await;
}

/// Overlapping takes, and updates that add keys while they run: every key
/// with the prefix is answered by exactly one take (the ones added during
/// the takes by one of them or by a last take after), and no other key is
/// lost.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::overlapping_takes_share_out_each_key(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn overlapping_takes_share_out_each_key(store: &dyn SessionStore) {
    const TAKES: usize = 8;
    let c = Check::new(store, "overlapping_takes_share_out_each_key");
    let t = now();
    let k = key();
    let mut initial = data(&[("user", json!("ada"))]);
    for i in 0..20 {
        initial.insert(format!("_f.{i:02}"), json!(i));
    }
    c.create(&k, &create_at(initial, t)).await;

    let adds: Vec<Change> = (0..TAKES)
        .map(|i| {
            let set = data(&[
                (&format!("_f.new-{i}"), json!(i)),
                (&format!("other-{i}"), json!(i)),
            ]);
            update(set, &[], t, t, t + Duration::days(1))
        })
        .collect();
    let mut futures: Vec<Pin<Box<dyn Future<Output = Option<Data>> + Send + '_>>> = Vec::new();
    for change in &adds {
        let k = &k;
        futures.push(Box::pin(
            async move { c.store.take_prefixed(k, "_f.").await.ok() },
        ));
        futures.push(Box::pin(async move {
            let outcome = c.ok("an update overlapping the takes", c.store.save(k, change).await);
            c.saved("outcome of an update overlapping the takes", outcome);
            None
        }));
    }
    let answers = join_all(futures).await;
    let mut takes: Vec<Data> = answers.into_iter().flatten().collect();
    if takes.len() != TAKES {
        c.fail(format_args!(
            "{} of {TAKES} overlapping takes failed",
            TAKES - takes.len()
        ));
    }
    takes.push(c.ok("the take after the others", store.take_prefixed(&k, "_f.").await));

    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for taken in &takes {
        for name in taken.keys() {
            *seen.entry(name.clone()).or_default() += 1;
        }
    }
    let twice: Vec<&String> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    if !twice.is_empty() {
        c.fail(format_args!("keys answered by more than one take: {twice:?}"));
    }
    let want: Vec<String> = (0..20)
        .map(|i| format!("_f.{i:02}"))
        .chain((0..TAKES).map(|i| format!("_f.new-{i}")))
        .collect();
    let lost: Vec<&String> = want.iter().filter(|name| !seen.contains_key(*name)).collect();
    if !lost.is_empty() {
        c.fail(format_args!("keys no take answered: {lost:?}"));
    }
    let Some(record) = c.load(&k).await else {
        c.fail(format_args!("the record vanished after overlapping takes"));
    };
    let mut left: Vec<&String> = record.data.keys().collect();
    left.sort();
    let mut expect: Vec<String> = std::iter::once("user".to_owned())
        .chain((0..TAKES).map(|i| format!("other-{i}")))
        .collect();
    expect.sort();
    c.eq("the keys left after the takes", left, expect.iter().collect());
}

/// Fails unless `key` holds exactly `values`, naming the keys that differ;
/// `after` says what wrote them.
async fn round_trips(c: Check<'_>, after: &str, key: &StoreKey, values: &Data) {
    let loaded = c.load(key).await;
    if loaded.as_ref().map(|r| &r.data) != Some(values) {
        let diff: Vec<&String> = values
            .iter()
            .filter(|(name, value)| loaded.as_ref().and_then(|r| r.data.get(*name)) != Some(*value))
            .map(|(name, _)| name)
            .collect();
        c.fail(format_args!(
            "after {after} these keys did not round-trip: {diff:?}"
        ));
    }
}

/// Values and keys of every kind survive a round trip through create and
/// update: nested JSON, numbers at the edges, unicode, a 64 KiB string, and
/// keys such as `"a.b"`, `""`, `"../x"`, `"key with spaces"` and `"ü"`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::values_round_trip(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn values_round_trip(store: &dyn SessionStore) {
    let c = Check::new(store, "values_round_trip");
    let t = now();
    let big = "x".repeat(64 * 1024);
    let values = data(&[
        ("a.b", json!("dotted")),
        ("", json!("empty key")),
        ("../x", json!("path-like key")),
        ("key with spaces", json!("spaced")),
        ("ü", json!("umlaut key")),
        ("$where", json!("dollar")),
        ("'; DROP TABLE sessions; --", json!("quote")),
        (
            "unicode",
            json!("héllo wörld ✓ 日本語 😀 \u{202e}rtl\u{202c} e\u{301}"),
        ),
        ("escapes", json!("quote \" backslash \\ newline \n tab \t")),
        (
            "nested",
            json!({"list": [1, "two", null, true, {"deep": [[], {}]}], "obj": {"x": {"y": {"z": 1.5}}}}),
        ),
        ("empty_list", json!([])),
        ("empty_obj", json!({})),
        ("null", Value::Null),
        ("false", json!(false)),
        ("u64_max", json!(u64::MAX)),
        ("i64_min", json!(i64::MIN)),
        ("float", json!(-0.25)),
        ("big", json!(big)),
    ]);
    let k = key();
    c.create(&k, &create_at(values.clone(), t)).await;
    round_trips(c, "a create", &k, &values).await;

    // The same values written by an update into another record.
    let k2 = key();
    c.create(&k2, &create_at(Data::new(), t)).await;
    let change = update(values.clone(), &[], t, t, t + Duration::days(1));
    let outcome = c.save("update", &k2, &change).await;
    c.saved("outcome of an update", outcome);
    round_trips(c, "an update", &k2, &values).await;

    // Removing odd keys works too.
    let odd = ["", "../x", "a.b", "ü"];
    let change = update(Data::new(), &odd, t, t, t + Duration::days(1));
    c.save("update removing odd keys", &k2, &change).await;
    let loaded = c.load(&k2).await;
    let mut want = values;
    for name in odd {
        want.remove(name);
    }
    let got = loaded.map(|r| r.data.keys().cloned().collect::<Vec<_>>());
    let want = want.keys().cloned().collect();
    c.eq("keys after removing odd keys", got, Some(want));
}

/// Creates `first` under a new key at `t` for a day and `second` under
/// another a second later for two days; answers the keys and the records.
async fn create_two(c: Check<'_>, t: OffsetDateTime, first: Data, second: Data) -> [(StoreKey, Record); 2] {
    let (k1, k2) = (key(), key());
    let first = create_at(first, t);
    let second = create(second, t + Duration::seconds(1), t + Duration::days(2));
    c.create(&k1, &first).await;
    c.create(&k2, &second).await;
    [(k1, first.to_record()), (k2, second.to_record())]
}

/// Records under different keys never see each other's data: creates,
/// updates, touches and deletes of one leave the other alone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::keys_are_isolated(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn keys_are_isolated(store: &dyn SessionStore) {
    let c = Check::new(store, "keys_are_isolated");
    let t = now();
    let owner_a = data(&[("owner", json!("a")), ("shared_name", json!(1))]);
    let owner_b = data(&[("owner", json!("b")), ("shared_name", json!(2))]);
    let [(a, record_a), (b, record_b)] = create_two(c, t, owner_a, owner_b).await;
    c.holds("record a", &a, &record_a).await;
    c.holds("record b", &b, &record_b).await;

    let change = update(
        data(&[("only_a", json!(true)), ("shared_name", json!(10))]),
        &["owner"],
        t,
        t + Duration::minutes(1),
        t + Duration::days(3),
    );
    c.save("update of a", &a, &change).await;
    c.holds("record b after an update of a", &b, &record_b).await;

    c.delete("delete of a", &a).await;
    c.holds("record b after a delete of a", &b, &record_b).await;

    let outcome = c.save("update of deleted a", &a, &change).await;
    c.missing("outcome of an update of deleted a", outcome);
    c.holds("record b after an update of deleted a", &b, &record_b)
        .await;
    c.absent("deleted a", &a).await;
}

/// A cycle moves the record: under `to` it has the data as it is in the
/// store now (a key another save wrote to `from` after the session was
/// loaded included), with the change's `set` keys written and `removed`
/// keys removed, `accessed` and `expires` replaced and `created` kept; and
/// `from` loads `None`. A touch-only cycle (nothing set or removed) moves
/// the data unchanged.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::cycle_moves_record(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn cycle_moves_record(store: &dyn SessionStore) {
    let c = Check::new(store, "cycle_moves_record");
    let t = now();
    let (from, to) = (key(), key());
    let initial = create(
        data(&[
            ("user", json!("ada")),
            ("overwrite", json!(1)),
            ("drop", json!([1, 2])),
        ]),
        t,
        t + Duration::days(1),
    );
    c.create(&from, &initial).await;
    // Another request writes a key after this one loaded the session.
    let other = update(
        data(&[("written_meanwhile", json!({"by": "another save"}))]),
        &[],
        t,
        t + Duration::seconds(5),
        t + Duration::days(1),
    );
    let outcome = c.save("update by another save", &from, &other).await;
    c.saved("outcome of an update", outcome);

    let change = update(
        data(&[("overwrite", json!(2)), ("logged_in", json!(true))]),
        &["drop", "never_there"],
        t + Duration::seconds(99),
        t + Duration::minutes(3),
        t + Duration::days(3),
    );
    let outcome = c.cycle("cycle", &from, &to, &change).await;
    c.saved("outcome of a cycle", outcome);
    let want = Record {
        data: data(&[
            ("user", json!("ada")),
            ("overwrite", json!(2)),
            ("written_meanwhile", json!({"by": "another save"})),
            ("logged_in", json!(true)),
        ]),
        created: t,
        accessed: t + Duration::minutes(3),
        expires: t + Duration::days(3),
    };
    c.holds("record under the new key after a cycle", &to, &want)
        .await;
    c.absent("record under the old key after a cycle", &from).await;
    // The old key is free again; an update of it finds nothing.
    let outcome = c.save("update of the old key", &from, &other).await;
    c.missing("outcome of an update of the old key after a cycle", outcome);

    // A touch-only cycle moves the data as it is.
    let third = key();
    let touch = touch(t, t + Duration::minutes(4), t + Duration::days(4));
    let outcome = c.cycle("touch-only cycle", &to, &third, &touch).await;
    c.saved("outcome of a touch-only cycle", outcome);
    let moved = Record {
        accessed: t + Duration::minutes(4),
        expires: t + Duration::days(4),
        ..want
    };
    c.holds("record after a touch-only cycle", &third, &moved).await;
    c.absent("old key after a touch-only cycle", &to).await;
}

/// A cycle of a key with no record (never created, or deleted) answers
/// [`SaveOutcome::Missing`] and writes nothing under `to`: a deleted
/// session is never brought back under a new id.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::cycle_missing_is_missing(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn cycle_missing_is_missing(store: &dyn SessionStore) {
    let c = Check::new(store, "cycle_missing_is_missing");
    let t = now();
    let change = update(
        data(&[("user", json!("mallory"))]),
        &[],
        t,
        t,
        t + Duration::days(1),
    );
    let touch = touch(t, t, t + Duration::days(1));

    let (never, to) = (key(), key());
    for (what, change) in [("cycle", &change), ("touch-only cycle", &touch)] {
        let outcome = c.cycle(what, &never, &to, change).await;
        c.missing(&format!("outcome of a {what} of a key never saved"), outcome);
        c.absent(&format!("new key after a {what} of a key never saved"), &to)
            .await;
    }

    let (deleted, to) = (key(), key());
    let record = create_at(data(&[("user", json!("ada"))]), t);
    c.create(&deleted, &record).await;
    c.delete("delete", &deleted).await;
    let outcome = c.cycle("cycle", &deleted, &to, &change).await;
    c.missing("outcome of a cycle of a deleted key", outcome);
    c.absent("new key after a cycle of a deleted key", &to).await;
    c.absent("deleted key after a cycle of it", &deleted).await;
}

/// A cycle onto a key that holds a record answers [`StoreError::Conflict`]
/// and changes neither record.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::cycle_onto_existing_conflicts(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn cycle_onto_existing_conflicts(store: &dyn SessionStore) {
    let c = Check::new(store, "cycle_onto_existing_conflicts");
    let t = now();
    let owner_from = data(&[("owner", json!("from"))]);
    let owner_to = data(&[("owner", json!("to")), ("other", json!(2))]);
    let [(from, first), (to, second)] = create_two(c, t, owner_from, owner_to).await;
    let change = update(
        data(&[("owner", json!("moved"))]),
        &["other"],
        t,
        t + Duration::minutes(1),
        t + Duration::days(3),
    );
    let what = "a cycle onto a key that holds a record";
    c.conflict(what, store.cycle(&from, &to, &change).await);
    let what = "record under the old key after a conflicting cycle (must be unchanged)";
    c.holds(what, &from, &first).await;
    let what = "record under the new key after a conflicting cycle (must be unchanged)";
    c.holds(what, &to, &second).await;
}

/// A save or cycle whose resulting record would be larger than the store's
/// record limit (`limit` bytes) fails with [`StoreError::TooLarge`] and
/// writes nothing: a create leaves no record, an update and a cycle leave
/// the record as it was, under its old key. The merged record counts, not
/// the change: an update adding 60 % of the limit to a record already
/// holding 60 % is refused. A record well under the limit (a quarter) is
/// saved.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = carafe::MemoryStore::new().max_record_bytes(4096);
/// carafe::store::conformance::oversized_save_is_refused(&store, 4096).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn oversized_save_is_refused(store: &dyn SessionStore, limit: usize) {
    let c = Check::new(store, "oversized_save_is_refused");
    let t = now();
    let text = |n: usize| json!("x".repeat(n));

    // A create that is too large on its own.
    let big = key();
    let what = "a create larger than the limit";
    c.too_large(
        what,
        store
            .save(&big, &create_at(data(&[("big", text(limit + 1))]), t))
            .await,
        limit,
    );
    c.absent("record after a refused create", &big).await;

    // A record a quarter of the limit is saved.
    let k = key();
    c.create(
        &k,
        &create_at(data(&[("a", text(limit / 4)), ("keep", json!(1))]), t),
    )
    .await;
    let first = c.load(&k).await;
    if first.is_none() {
        c.fail(format_args!("a record a quarter of the limit was not stored"));
    }

    // An update that is too large on its own.
    let grow = |set: Data| update(set, &["keep"], t, t + Duration::minutes(1), t + Duration::days(2));
    let what = "an update larger than the limit";
    c.too_large(
        what,
        store.save(&k, &grow(data(&[("big", text(limit + 1))]))).await,
        limit,
    );
    c.eq(
        "record after a refused update (must be unchanged)",
        c.load(&k).await,
        first.clone(),
    );

    // An update that fits by itself but not merged with what is stored.
    let grown = update(
        Data::new(),
        &[],
        t,
        t + Duration::minutes(1),
        t + Duration::days(2),
    );
    let fill = update(
        data(&[("b", text(limit * 3 / 5))]),
        &[],
        t,
        t,
        t + Duration::days(1),
    );
    c.saved(
        "an update to 85 % of the limit",
        c.save("update", &k, &fill).await,
    );
    let filled = c.load(&k).await;
    let what = "an update that fits alone but not merged into the record";
    c.too_large(
        what,
        store.save(&k, &grow(data(&[("c", text(limit * 3 / 5))]))).await,
        limit,
    );
    c.eq(
        "record after a refused merge (must be unchanged)",
        c.load(&k).await,
        filled.clone(),
    );

    // A cycle whose merged record is too large.
    let to = key();
    let what = "a cycle whose merged record is larger than the limit";
    c.too_large(
        what,
        store
            .cycle(&k, &to, &grow(data(&[("c", text(limit * 3 / 5))])))
            .await,
        limit,
    );
    c.eq(
        "record under the old key after a refused cycle (must be unchanged)",
        c.load(&k).await,
        filled,
    );
    c.absent("record under the new key after a refused cycle", &to)
        .await;

    // A touch and a removal still work.
    c.saved("a touch", c.save("touch", &k, &grown).await);
    let shrink = update(
        Data::new(),
        &["b"],
        t,
        t + Duration::minutes(2),
        t + Duration::days(2),
    );
    c.saved("an update removing a key", c.save("update", &k, &shrink).await);
}

/// How many rounds the cycle race checks run.
const CYCLE_ROUNDS: usize = 30;

/// What one of the calls racing in [`cycle_racing_delete_never_resurrects`]
/// saw.
#[derive(Default)]
struct Raced {
    /// The delete's answer and a load of `to` right after it.
    deleted: Option<(Result<(), StoreError>, Loaded)>,
    /// The cycle's answer.
    cycled: Option<Result<SaveOutcome, StoreError>>,
    /// Records the watcher found under `to` and then still under `from`.
    both: Vec<(Record, Record)>,
}

type Racer<'a> = Pin<Box<dyn Future<Output = Raced> + Send + 'a>>;

/// What a load answers.
type Loaded = Result<Option<Record>, StoreError>;

/// A save racing a cycle in [`cycle_racing_update`]: the update's index
/// (`None` for the cycle) and its answer.
type Saver<'a> = Pin<Box<dyn Future<Output = (Option<usize>, Result<SaveOutcome, StoreError>)> + Send + 'a>>;

/// Yields to the scheduler `n` times, to start a racing call later.
async fn yields(n: usize) {
    for _ in 0..n {
        let mut yielded = false;
        poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }
}

/// A delete of `from` (a logout) racing a cycle of `from` (a login), 30
/// rounds, each started in another order. After every round `from` holds
/// nothing, and:
///
/// * if the cycle answered [`SaveOutcome::Missing`] (the delete came first),
///   nothing is under `to`;
/// * if it answered [`SaveOutcome::Saved`] (the cycle came first and the
///   delete found nothing), the record is under `to`, and a load of `to`
///   started after the delete returned sees it already: a cycle that
///   answers `Saved` although the delete had finished before it wrote
///   brought the deleted session back under the new id.
///
/// Meanwhile a third task loads `to` and then `from` over and over: it must
/// never find the record under both (a copy then a delete is not a move).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::cycle_racing_delete_never_resurrects(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn cycle_racing_delete_never_resurrects(store: &dyn SessionStore) {
    let c = Check::new(store, "cycle_racing_delete_never_resurrects");
    let t = now();
    let initial = data(&[("user", json!("ada"))]);
    let change = update(
        data(&[("logged_in", json!(true))]),
        &[],
        t,
        t + Duration::minutes(1),
        t + Duration::days(1),
    );
    for round in 0..CYCLE_ROUNDS {
        let (from, to) = (key(), key());
        c.create(&from, &create_at(initial.clone(), t)).await;
        let done = AtomicBool::new(false);
        let (from, to, change, done) = (&from, &to, &change, &done);
        // The delete, then a load of `to`: what a request that starts after
        // the logout would see under the new id.
        let logout: Racer<'_> = Box::pin(async move {
            yields(round % 3).await;
            let deleted = store.delete(from).await;
            let after = store.load(to).await;
            Raced {
                deleted: Some((deleted, after)),
                ..Raced::default()
            }
        });
        let login: Racer<'_> = Box::pin(async move {
            yields((round / 3) % 3).await;
            let outcome = store.cycle(from, to, change).await;
            done.store(true, Ordering::SeqCst);
            Raced {
                cycled: Some(outcome),
                ..Raced::default()
            }
        });
        // Loads `to`, then `from`, until the cycle answers.
        let watcher: Racer<'_> = Box::pin(async move {
            let mut both = Vec::new();
            while !done.load(Ordering::SeqCst) {
                if let (Ok(Some(under_to)), Ok(Some(under_from))) =
                    (store.load(to).await, store.load(from).await)
                {
                    both.push((under_to, under_from));
                }
                yields(1).await;
            }
            Raced {
                both,
                ..Raced::default()
            }
        });
        let mut futures = vec![logout, login, watcher];
        futures.rotate_left(round % 3);
        let mut deleted = None;
        let mut outcome = None;
        let mut both = Vec::new();
        for raced in join_all(futures).await {
            deleted = deleted.or(raced.deleted);
            outcome = outcome.or(raced.cycled);
            both.extend(raced.both);
        }
        let (Some((deleted, seen_after_delete)), Some(outcome)) = (deleted, outcome) else {
            c.fail(format_args!("a racing call did not answer"));
        };
        c.ok("racing delete", deleted);
        let seen_after_delete = c.ok("load of the new key after the delete", seen_after_delete);
        let outcome = c.ok("racing cycle", outcome);
        if let Some((under_to, under_from)) = both.first() {
            c.fail(format_args!(
                "round {round}: while the cycle ran, the record was under the new key and \
                 (loaded after it) still under the old one:\n  new: {under_to:?}\n  old: {under_from:?}"
            ));
        }
        let under_from = c.load(from).await;
        if under_from.is_some() {
            c.fail(format_args!(
                "round {round}: after a delete racing a cycle ({outcome:?}) the old key holds {under_from:?}"
            ));
        }
        let under_to = c.load(to).await;
        match outcome {
            SaveOutcome::Missing => {
                if under_to.is_some() || seen_after_delete.is_some() {
                    c.fail(format_args!(
                        "round {round}: the cycle answered Missing but the new key holds {:?}",
                        under_to.or(seen_after_delete)
                    ));
                }
            }
            SaveOutcome::Saved => {
                let mut want = initial.clone();
                want.extend(change.set.clone());
                let what = "data under the new key after a cycle that answered Saved";
                c.eq(what, under_to.map(|r| r.data), Some(want));
                if seen_after_delete.is_none() {
                    c.fail(format_args!(
                        "round {round}: the delete of the old key finished, a load of the new key \
                         after it found nothing, and then the cycle answered Saved: the deleted \
                         session was brought back under the new id"
                    ));
                }
            }
        }
    }
}

/// Updates of a session (each setting a key of its own) racing a cycle of
/// it, 5 rounds of 10 updates: every update that answered
/// [`SaveOutcome::Saved`] has its key under `to` after the cycle, and every
/// one that answered [`SaveOutcome::Missing`] (it came after the move) has
/// not; nothing is left under `from`. An update saved before the move is
/// never lost.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::cycle_racing_update(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn cycle_racing_update(store: &dyn SessionStore) {
    const UPDATES: usize = 10;
    let c = Check::new(store, "cycle_racing_update");
    let t = now();
    let change = update(
        data(&[("logged_in", json!(true))]),
        &["guest"],
        t,
        t + Duration::minutes(1),
        t + Duration::days(1),
    );
    let updates: Vec<Change> = (0..UPDATES)
        .map(|i| {
            update(
                data(&[(&format!("key-{i}"), json!(i))]),
                &[],
                t,
                t + Duration::seconds(i as i64),
                t + Duration::days(1),
            )
        })
        .collect();
    let initial = create(
        data(&[("user", json!("ada")), ("guest", json!(true))]),
        t,
        t + Duration::days(1),
    );
    for round in 0..5 {
        let (from, to) = (key(), key());
        c.create(&from, &initial).await;
        let (from_ref, to_ref, change_ref) = (&from, &to, &change);
        let mut futures: Vec<Saver<'_>> = updates
            .iter()
            .enumerate()
            .map(|(i, u)| Box::pin(async move { (Some(i), store.save(from_ref, u).await) }) as Saver<'_>)
            .collect();
        // The cycle starts at another place among the updates each round.
        futures.insert(
            (round * 2 + 1).min(UPDATES),
            Box::pin(async move { (None, store.cycle(from_ref, to_ref, change_ref).await) }),
        );
        let mut saved = Vec::new();
        let mut missing = Vec::new();
        let mut cycled = None;
        for (i, result) in join_all(futures).await {
            match i {
                Some(i) => match c.ok(&format!("update {i}"), result) {
                    SaveOutcome::Saved => saved.push(i),
                    SaveOutcome::Missing => missing.push(i),
                },
                None => cycled = Some(c.ok("cycle", result)),
            }
        }
        c.eq("outcome of the cycle", cycled, Some(SaveOutcome::Saved));
        c.absent("record under the old key after the cycle", &from).await;
        let Some(record) = c.load(&to).await else {
            c.fail(format_args!(
                "round {round}: nothing under the new key after the cycle"
            ));
        };
        let lost: Vec<usize> = saved
            .iter()
            .copied()
            .filter(|i| record.data.get(&format!("key-{i}")) != Some(&json!(i)))
            .collect();
        if !lost.is_empty() {
            c.fail(format_args!(
                "round {round}: updates {lost:?} answered Saved but their keys are not under the \
                 new key after the cycle: {:?}",
                record.data
            ));
        }
        let written: Vec<usize> = missing
            .iter()
            .copied()
            .filter(|i| record.data.contains_key(&format!("key-{i}")))
            .collect();
        if !written.is_empty() {
            c.fail(format_args!(
                "round {round}: updates {written:?} answered Missing but their keys were written"
            ));
        }
        let get = |name: &str| record.data.get(name);
        c.eq("a key the cycle set", get("logged_in"), Some(&json!(true)));
        c.eq("a key the cycle removed", get("guest"), None);
        c.eq("a key nobody touched", get("user"), Some(&json!("ada")));
    }
}

// ---------------------------------------------------------------------------
// a user's sessions

/// A create with `owner` under [`OWNER_KEY`] (and one more key) at `t`,
/// expiring at `expires`.
fn owned_create(owner: &str, t: OffsetDateTime, expires: OffsetDateTime) -> Change {
    create(
        data(&[(OWNER_KEY, json!(owner)), ("cart", json!([1, 2]))]),
        t,
        expires,
    )
}

impl Check<'_> {
    /// The store's list for `owner` at `now`, sorted by key.
    async fn owned(self, what: &str, owner: &str, now: OffsetDateTime) -> Vec<OwnedRecord> {
        let mut listed = self.ok(what, self.store.list_owned(owner, now).await);
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        listed
    }

    /// `owner`'s list at `now` is exactly `want` (in any order).
    async fn lists(self, what: &str, owner: &str, now: OffsetDateTime, want: &[(&StoreKey, &Change)]) {
        let mut want: Vec<OwnedRecord> = want
            .iter()
            .map(|(key, change)| OwnedRecord::new((*key).clone(), &change.to_record()))
            .collect();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        self.eq(what, self.owned(what, owner, now).await, want);
    }
}

/// [`list_owned`](SessionStore::list_owned) answers exactly the records
/// whose data holds the owner, as a string, under [`OWNER_KEY`], with their
/// timestamps: never another owner's (not one whose name merely starts the
/// same), never one without an owner or with a non-string one.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::owned_are_listed_by_owner(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn owned_are_listed_by_owner(store: &dyn SessionStore) {
    let c = Check::new(store, "owned_are_listed_by_owner");
    let t = now();
    let day = t + Duration::days(1);
    let (a, b, bob, none, number, prefix) = (key(), key(), key(), key(), key(), key());
    let change_a = owned_create("alice", t, day);
    let change_b = owned_create("alice", t - Duration::minutes(5), day + Duration::hours(1));
    let change_bob = owned_create("bob", t, day);
    c.create(&a, &change_a).await;
    c.create(&b, &change_b).await;
    c.create(&bob, &change_bob).await;
    c.create(&none, &create_at(data(&[("owner", json!("alice"))]), t))
        .await;
    c.create(&number, &create_at(data(&[(OWNER_KEY, json!(7))]), t))
        .await;
    c.create(&prefix, &owned_create("alice2", t, day)).await;
    c.lists(
        "alice's sessions",
        "alice",
        t,
        &[(&a, &change_a), (&b, &change_b)],
    )
    .await;
    c.lists("bob's sessions", "bob", t, &[(&bob, &change_bob)]).await;
    c.lists("an owner with no session", "carol", t, &[]).await;
    c.lists("the owner \"7\" (only a number 7 is stored)", "7", t, &[])
        .await;
    c.lists("the empty owner", "", t, &[]).await;
}

/// An update that sets [`OWNER_KEY`] adds the record to the owner's list,
/// one that sets another owner moves it to that owner's list, one that
/// removes the key takes it off every list, and a touch shows in the
/// listed timestamps.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::owner_follows_updates(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn owner_follows_updates(store: &dyn SessionStore) {
    let c = Check::new(store, "owner_follows_updates");
    let t = now();
    let k = key();
    c.create(&k, &create_at(data(&[("cart", json!(1))]), t)).await;
    c.lists("before any owner is set", "alice", t, &[]).await;

    let set = |owner: &str, minutes: i64| {
        update(
            data(&[(OWNER_KEY, json!(owner))]),
            &[],
            t,
            t + Duration::minutes(minutes),
            t + Duration::days(2),
        )
    };
    let login = set("alice", 1);
    c.saved(
        "update setting the owner",
        c.save("update setting the owner", &k, &login).await,
    );
    c.lists("after the owner is set", "alice", t, &[(&k, &login)])
        .await;

    let touch = touch(t, t + Duration::minutes(2), t + Duration::days(3));
    c.saved("touch", c.save("touch", &k, &touch).await);
    c.lists("after a touch: the new timestamps", "alice", t, &[(&k, &touch)])
        .await;

    let other = set("bob", 3);
    c.saved(
        "update changing the owner",
        c.save("update changing the owner", &k, &other).await,
    );
    c.lists("the old owner after a change of owner", "alice", t, &[])
        .await;
    c.lists("the new owner after a change of owner", "bob", t, &[(&k, &other)])
        .await;

    let clear = update(
        Data::new(),
        &[OWNER_KEY],
        t,
        t + Duration::minutes(4),
        t + Duration::days(2),
    );
    c.saved(
        "update removing the owner",
        c.save("update removing the owner", &k, &clear).await,
    );
    c.lists("after the owner is removed", "bob", t, &[]).await;
    c.lists("the first owner after the owner is removed", "alice", t, &[])
        .await;
}

/// A cycle moves the record on the owner's list to its new key (the old
/// key is never listed again), and a cycle that sets another owner moves it
/// to that owner's list.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::owner_moves_with_cycle(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn owner_moves_with_cycle(store: &dyn SessionStore) {
    let c = Check::new(store, "owner_moves_with_cycle");
    let t = now();
    let (from, to, last) = (key(), key(), key());
    let initial = owned_create("alice", t, t + Duration::days(1));
    c.create(&from, &initial).await;
    let moved = touch(t, t + Duration::minutes(1), t + Duration::days(2));
    let outcome = c.cycle("cycle", &from, &to, &moved).await;
    c.saved("outcome of the cycle", outcome);
    c.lists("after a cycle: the new key only", "alice", t, &[(&to, &moved)])
        .await;

    let takeover = update(
        data(&[(OWNER_KEY, json!("bob"))]),
        &[],
        t,
        t + Duration::minutes(2),
        t + Duration::days(2),
    );
    let outcome = c
        .cycle("cycle setting another owner", &to, &last, &takeover)
        .await;
    c.saved("outcome of the cycle setting another owner", outcome);
    c.lists("the old owner after a cycle to another", "alice", t, &[])
        .await;
    c.lists(
        "the new owner after a cycle to it",
        "bob",
        t,
        &[(&last, &takeover)],
    )
    .await;
}

/// A deleted record is never listed: revoking all of an owner's sessions
/// but one (deleting the others) leaves that one listed, and deleting it
/// leaves an empty list.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::deleted_owned_are_not_listed(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn deleted_owned_are_not_listed(store: &dyn SessionStore) {
    let c = Check::new(store, "deleted_owned_are_not_listed");
    let t = now();
    let keys = [key(), key(), key()];
    let change = owned_create("alice", t, t + Duration::days(1));
    for k in &keys {
        c.create(k, &change).await;
    }
    let [keep, revoked @ ..] = &keys;
    for listed in c.owned("list before revoking", "alice", t).await {
        if listed.key != *keep {
            c.delete("delete of another session", &listed.key).await;
        }
    }
    for k in revoked {
        c.absent("a revoked session", k).await;
    }
    c.lists("after revoking all others", "alice", t, &[(keep, &change)])
        .await;
    c.delete("delete of the last session", keep).await;
    c.lists("after deleting every session", "alice", t, &[]).await;
}

/// A record whose `expires` is at or before `now` is never listed, and a
/// record whose expiry a later save extended is listed until the new
/// expiry, also after a listing at a time when it had looked expired.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// carafe::store::conformance::expired_owned_are_not_listed(&carafe::MemoryStore::new()).await;
/// # });
/// ```
///
/// # Panics
///
/// When the rule is broken.
pub async fn expired_owned_are_not_listed(store: &dyn SessionStore) {
    let c = Check::new(store, "expired_owned_are_not_listed");
    let t = now();
    let (short, long, extended) = (key(), key(), key());
    let short_change = owned_create("alice", t, t + Duration::days(1));
    let long_change = owned_create("alice", t, t + Duration::days(3));
    c.create(&short, &short_change).await;
    c.create(&long, &long_change).await;
    c.create(&extended, &owned_create("alice", t, t + Duration::days(1)))
        .await;
    let extend = touch(t, t + Duration::minutes(1), t + Duration::days(4));
    c.saved(
        "extending touch",
        c.save("extending touch", &extended, &extend).await,
    );
    c.lists(
        "before any expiry",
        "alice",
        t,
        &[
            (&short, &short_change),
            (&long, &long_change),
            (&extended, &extend),
        ],
    )
    .await;
    let later = t + Duration::days(2);
    c.lists(
        "after one has expired",
        "alice",
        later,
        &[(&long, &long_change), (&extended, &extend)],
    )
    .await;
    c.lists(
        "at the exact expiry of one",
        "alice",
        t + Duration::days(1),
        &[(&long, &long_change), (&extended, &extend)],
    )
    .await;
    // A save that brings the expired-looking one back to life (the record
    // is still stored: the clock above ran ahead of the store's).
    let revive = touch(t, t + Duration::minutes(2), t + Duration::days(5));
    let outcome = c
        .save("touch of the one listed as expired", &short, &revive)
        .await;
    if outcome == SaveOutcome::Saved {
        c.lists(
            "after the expired-looking one was extended",
            "alice",
            later,
            &[(&short, &revive), (&long, &long_change), (&extended, &extend)],
        )
        .await;
    }
}

/// Test support inside carafe: a store that passes every call on to another
/// store but the ones a [`Variant`] changes, to run the checks on a variant
/// of a store.
#[cfg(test)]
pub(crate) mod forward {
    use async_trait::async_trait;
    use time::OffsetDateTime;

    use crate::error::StoreError;
    use crate::id::StoreKey;
    use crate::record::{Change, Data, Record, SaveOutcome};
    use crate::store::SessionStore;

    /// What a variant of `S` does differently: by default nothing.
    #[async_trait]
    pub(crate) trait Variant<S: SessionStore>: std::fmt::Debug + Send + Sync + 'static {
        async fn cycle(
            &self,
            inner: &S,
            from: &StoreKey,
            to: &StoreKey,
            change: &Change,
        ) -> Result<SaveOutcome, StoreError> {
            inner.cycle(from, to, change).await
        }

        async fn delete_expired(&self, inner: &S, now: OffsetDateTime) -> Result<u64, StoreError> {
            inner.delete_expired(now).await
        }

        async fn take_prefixed(&self, inner: &S, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
            inner.take_prefixed(key, prefix).await
        }
    }

    /// `inner` changed by `variant`, under another name.
    #[derive(Debug)]
    pub(crate) struct Forward<S, V> {
        pub(crate) inner: S,
        pub(crate) name: &'static str,
        pub(crate) variant: V,
    }

    #[async_trait]
    impl<S: SessionStore, V: Variant<S>> SessionStore for Forward<S, V> {
        async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
            self.inner.load(key).await
        }

        async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
            self.inner.save(key, change).await
        }

        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }

        async fn cycle(
            &self,
            from: &StoreKey,
            to: &StoreKey,
            change: &Change,
        ) -> Result<SaveOutcome, StoreError> {
            self.variant.cycle(&self.inner, from, to, change).await
        }

        async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
            self.variant.take_prefixed(&self.inner, key, prefix).await
        }

        async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
            self.variant.delete_expired(&self.inner, now).await
        }

        async fn list_owned(
            &self,
            owner: &str,
            now: OffsetDateTime,
        ) -> Result<Vec<crate::record::OwnedRecord>, StoreError> {
            self.inner.list_owned(owner, now).await
        }

        fn name(&self) -> &'static str {
            self.name
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each check must catch the flaw it is about: a store that breaks one
    //! rule at a time makes the check panic.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flaw {
        None,
        EmptyName,
        LoadUnknownIsSome,
        LoadShiftsCreated,
        CreateOverwrites,
        ConflictButWrites,
        UpdateReplacesData,
        UpdateIgnoresRemoved,
        UpdateWritesCreated,
        UpdateKeepsExpires,
        UpdateUpserts,
        DeleteMissingErrors,
        DeleteIsNoop,
        TouchClearsData,
        ExpiredStrictlyBefore,
        ExpiredCountsZero,
        ExpiredRemovesAll,
        RacyUpdate,
        CycleUpserts,
        CycleOverwrites,
        CycleKeepsFrom,
        CycleReplacesData,
        CycleCopiesThenDeletes,
        TruncatesLongStrings,
        DropsOddKeys,
        OneSharedRecord,
        NoSizeLimit,
        SizeOfChangeOnly,
        TooLargeButWrites,
        TakeLeavesKeys,
        TakeIsRacy,
        TakeTouches,
        TakeIgnoresPrefix,
        TakeCreates,
        OwnerListsAnyOwner,
        OwnerIgnoresExpiry,
        /// Lists from an index written at create and never updated.
        OwnerStaleIndex,
    }

    #[derive(Debug)]
    struct Broken {
        flaw: Flaw,
        records: Mutex<HashMap<StoreKey, Record>>,
        /// For `OwnerStaleIndex`: each key's first record, kept forever.
        index: Mutex<HashMap<StoreKey, Record>>,
    }

    impl Broken {
        fn new(flaw: Flaw) -> Self {
            Broken {
                flaw,
                records: Mutex::new(HashMap::new()),
                index: Mutex::new(HashMap::new()),
            }
        }

        fn key(&self, key: &StoreKey) -> StoreKey {
            if self.flaw == Flaw::OneSharedRecord {
                StoreKey::parse(&"0".repeat(64)).unwrap_or_else(|| key.clone())
            } else {
                key.clone()
            }
        }

        fn map(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, Record>> {
            self.records.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// The size check, as the flaw has it: `TooLarge` for a record over
        /// the default limit (`change` alone counted for `SizeOfChangeOnly`).
        fn too_large(&self, record: &Record, change: &Change) -> Result<(), StoreError> {
            let limit = crate::store::DEFAULT_MAX_RECORD_BYTES;
            let size = match self.flaw {
                Flaw::NoSizeLimit => return Ok(()),
                Flaw::SizeOfChangeOnly => crate::store::json_len(&change.to_record())?,
                _ => crate::store::json_len(record)?,
            };
            if size > limit {
                return Err(StoreError::TooLarge { size, limit });
            }
            Ok(())
        }

        fn mangle(&self, mut record: Record) -> Record {
            match self.flaw {
                Flaw::TruncatesLongStrings => {
                    for value in record.data.values_mut() {
                        if let Value::String(s) = value {
                            s.truncate(1000);
                        }
                    }
                }
                Flaw::DropsOddKeys => record.data.retain(|k, _| !k.is_empty() && k.is_ascii()),
                _ => {}
            }
            record
        }
    }

    #[async_trait]
    impl SessionStore for Broken {
        async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
            let found = self.map().get(&self.key(key)).cloned();
            Ok(match (found, self.flaw) {
                (None, Flaw::LoadUnknownIsSome) => {
                    let t = OffsetDateTime::UNIX_EPOCH;
                    Some(Record {
                        data: Data::new(),
                        created: t,
                        accessed: t,
                        expires: t,
                    })
                }
                (Some(mut r), Flaw::LoadShiftsCreated) => {
                    r.created += Duration::seconds(1);
                    Some(r)
                }
                (found, _) => found,
            })
        }

        async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
            let key = self.key(key);
            match change.kind {
                SaveKind::Create => {
                    let mut map = self.map();
                    let exists = map.contains_key(&key);
                    if exists && self.flaw != Flaw::CreateOverwrites {
                        if self.flaw == Flaw::ConflictButWrites {
                            map.insert(key, change.to_record());
                        }
                        return Err(StoreError::Conflict);
                    }
                    let record = change.to_record();
                    if let Err(err) = self.too_large(&record, change) {
                        if self.flaw == Flaw::TooLargeButWrites {
                            map.insert(key, record);
                        }
                        return Err(err);
                    }
                    if self.flaw == Flaw::OwnerStaleIndex {
                        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                        index.entry(key.clone()).or_insert_with(|| record.clone());
                    }
                    map.insert(key, self.mangle(record));
                    Ok(SaveOutcome::Saved)
                }
                SaveKind::Update => {
                    let current = self.map().get(&key).cloned();
                    if self.flaw == Flaw::RacyUpdate {
                        tokio::task::yield_now().await;
                    }
                    let mut record = match current {
                        Some(record) => record,
                        None if self.flaw == Flaw::UpdateUpserts => change.to_record(),
                        None => return Ok(SaveOutcome::Missing),
                    };
                    let expires = record.expires;
                    match self.flaw {
                        Flaw::UpdateReplacesData => record.data = change.set.clone(),
                        Flaw::UpdateIgnoresRemoved => {
                            record.data.extend(change.set.clone());
                            record.accessed = change.accessed;
                            record.expires = change.expires;
                        }
                        Flaw::TouchClearsData if change.is_touch() => {
                            record.data.clear();
                            change.apply(&mut record);
                        }
                        _ => change.apply(&mut record),
                    }
                    match self.flaw {
                        Flaw::UpdateWritesCreated => record.created = change.created,
                        Flaw::UpdateKeepsExpires => record.expires = expires,
                        _ => {}
                    }
                    if let Err(err) = self.too_large(&record, change) {
                        if self.flaw == Flaw::TooLargeButWrites {
                            self.map().insert(key, record);
                        }
                        return Err(err);
                    }
                    let record = self.mangle(record);
                    self.map().insert(key, record);
                    Ok(SaveOutcome::Saved)
                }
            }
        }

        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            let removed = match self.flaw {
                Flaw::DeleteIsNoop => None,
                _ => self.map().remove(&self.key(key)),
            };
            if removed.is_none() && self.flaw == Flaw::DeleteMissingErrors {
                return Err(StoreError::Corrupt("no such record".into()));
            }
            Ok(())
        }

        async fn cycle(
            &self,
            from: &StoreKey,
            to: &StoreKey,
            change: &Change,
        ) -> Result<SaveOutcome, StoreError> {
            let (from, to) = (self.key(from), self.key(to));
            if self.flaw == Flaw::CycleCopiesThenDeletes {
                // A load, a create and a delete, each its own step.
                let Some(mut record) = self.map().get(&from).cloned() else {
                    return Ok(SaveOutcome::Missing);
                };
                tokio::task::yield_now().await;
                change.apply(&mut record);
                self.too_large(&record, change)?;
                {
                    let mut map = self.map();
                    if map.contains_key(&to) {
                        return Err(StoreError::Conflict);
                    }
                    map.insert(to, record);
                }
                tokio::task::yield_now().await;
                self.map().remove(&from);
                return Ok(SaveOutcome::Saved);
            }
            let mut map = self.map();
            if map.contains_key(&to) && self.flaw != Flaw::CycleOverwrites {
                return Err(StoreError::Conflict);
            }
            let record = match (map.get(&from).cloned(), self.flaw) {
                (Some(record), _) => record,
                (None, Flaw::CycleUpserts) => change.to_record(),
                (None, _) => return Ok(SaveOutcome::Missing),
            };
            let mut record = record;
            if self.flaw == Flaw::CycleReplacesData {
                record = change.to_record();
            } else {
                change.apply(&mut record);
            }
            self.too_large(&record, change)?;
            if self.flaw != Flaw::CycleKeepsFrom {
                map.remove(&from);
            }
            map.insert(to, record);
            Ok(SaveOutcome::Saved)
        }

        async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
            let key = self.key(key);
            let current = self.map().get(&key).cloned();
            if self.flaw == Flaw::TakeIsRacy {
                tokio::task::yield_now().await;
            }
            let Some(mut record) = current else {
                if self.flaw == Flaw::TakeCreates {
                    let t = OffsetDateTime::UNIX_EPOCH;
                    let empty = Record {
                        data: Data::new(),
                        created: t,
                        accessed: t,
                        expires: t,
                    };
                    self.map().insert(key, empty);
                }
                return Ok(Data::new());
            };
            let prefix = if self.flaw == Flaw::TakeIgnoresPrefix {
                ""
            } else {
                prefix
            };
            let taken = record.take_prefixed(prefix);
            if self.flaw == Flaw::TakeTouches {
                record.accessed += Duration::seconds(1);
            }
            if self.flaw != Flaw::TakeLeavesKeys {
                self.map().insert(key, record);
            }
            Ok(taken)
        }

        async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
            let mut map = self.map();
            let before = map.len();
            match self.flaw {
                Flaw::ExpiredStrictlyBefore => map.retain(|_, r| r.expires >= now),
                Flaw::ExpiredRemovesAll => map.clear(),
                _ => map.retain(|_, r| r.expires > now),
            }
            if self.flaw == Flaw::ExpiredCountsZero {
                return Ok(0);
            }
            Ok((before - map.len()) as u64)
        }

        async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
            let records = match self.flaw {
                Flaw::OwnerStaleIndex => self.index.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                _ => self.map().clone(),
            };
            Ok(records
                .iter()
                .filter(|(_, r)| match self.flaw {
                    Flaw::OwnerListsAnyOwner => r.data.contains_key(OWNER_KEY) && r.expires > now,
                    Flaw::OwnerIgnoresExpiry => r.owner() == Some(owner),
                    _ => r.owner() == Some(owner) && r.expires > now,
                })
                .map(|(key, r)| OwnedRecord::new(key.clone(), r))
                .collect())
        }

        fn name(&self) -> &'static str {
            if self.flaw == Flaw::EmptyName {
                ""
            } else {
                "broken"
            }
        }
    }

    type CheckFn = fn(&dyn SessionStore) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Whether `check` panics on a store with `flaw`.
    async fn catches(flaw: Flaw, check: CheckFn) -> bool {
        let store = Arc::new(Broken::new(flaw));
        tokio::spawn(async move { check(&*store).await })
            .await
            .is_err_and(|e| e.is_panic())
    }

    macro_rules! check {
        ($f:ident) => {
            (stringify!($f), (|s| Box::pin($f(s))) as CheckFn)
        };
    }

    /// [`oversized_save_is_refused`] at the default limit, as `run` calls it.
    async fn oversized_save_at_the_default_limit(store: &dyn SessionStore) {
        oversized_save_is_refused(store, crate::store::DEFAULT_MAX_RECORD_BYTES).await;
    }

    #[tokio::test]
    async fn every_check_passes_a_correct_store_and_catches_its_flaw() {
        let cases: Vec<((&str, CheckFn), Vec<Flaw>)> = vec![
            (check!(name_is_set), vec![Flaw::EmptyName]),
            (check!(load_unknown_is_none), vec![Flaw::LoadUnknownIsSome]),
            (check!(create_then_load), vec![Flaw::LoadShiftsCreated]),
            (
                check!(create_over_existing_conflicts),
                vec![Flaw::CreateOverwrites, Flaw::ConflictButWrites],
            ),
            (
                check!(update_merges),
                vec![
                    Flaw::UpdateReplacesData,
                    Flaw::UpdateIgnoresRemoved,
                    Flaw::UpdateWritesCreated,
                    Flaw::UpdateKeepsExpires,
                ],
            ),
            (
                check!(update_missing_is_not_resurrected),
                vec![Flaw::UpdateUpserts],
            ),
            (
                check!(update_after_delete_is_missing),
                vec![Flaw::UpdateUpserts, Flaw::DeleteIsNoop],
            ),
            (
                check!(delete_removes),
                vec![Flaw::DeleteMissingErrors, Flaw::DeleteIsNoop],
            ),
            (
                check!(touch_changes_only_timestamps),
                vec![
                    Flaw::TouchClearsData,
                    Flaw::UpdateKeepsExpires,
                    Flaw::UpdateWritesCreated,
                ],
            ),
            (
                check!(delete_expired_exact),
                vec![
                    Flaw::ExpiredStrictlyBefore,
                    Flaw::ExpiredCountsZero,
                    Flaw::ExpiredRemovesAll,
                ],
            ),
            (
                check!(delete_expired_native),
                vec![Flaw::ExpiredCountsZero, Flaw::ExpiredRemovesAll],
            ),
            (check!(overlapping_updates_keep_all_keys), vec![Flaw::RacyUpdate]),
            (check!(overlapping_updates_and_removals), vec![Flaw::RacyUpdate]),
            (
                check!(values_round_trip),
                vec![Flaw::TruncatesLongStrings, Flaw::DropsOddKeys],
            ),
            (check!(keys_are_isolated), vec![Flaw::OneSharedRecord]),
            (
                check!(cycle_moves_record),
                vec![Flaw::CycleKeepsFrom, Flaw::CycleReplacesData],
            ),
            (check!(cycle_missing_is_missing), vec![Flaw::CycleUpserts]),
            (check!(cycle_onto_existing_conflicts), vec![Flaw::CycleOverwrites]),
            (
                check!(cycle_racing_delete_never_resurrects),
                vec![Flaw::CycleCopiesThenDeletes],
            ),
            (
                check!(cycle_racing_update),
                vec![Flaw::CycleCopiesThenDeletes, Flaw::CycleKeepsFrom],
            ),
            (
                check!(take_prefixed_takes_once),
                vec![
                    Flaw::TakeLeavesKeys,
                    Flaw::TakeTouches,
                    Flaw::TakeIgnoresPrefix,
                    Flaw::TakeCreates,
                ],
            ),
            (
                check!(overlapping_takes_share_out_each_key),
                vec![Flaw::TakeIsRacy, Flaw::TakeLeavesKeys],
            ),
            (
                check!(oversized_save_at_the_default_limit),
                vec![Flaw::NoSizeLimit, Flaw::SizeOfChangeOnly, Flaw::TooLargeButWrites],
            ),
            (check!(owned_are_listed_by_owner), vec![Flaw::OwnerListsAnyOwner]),
            (
                check!(owner_follows_updates),
                vec![
                    Flaw::OwnerStaleIndex,
                    Flaw::OwnerListsAnyOwner,
                    Flaw::UpdateKeepsExpires,
                ],
            ),
            (
                check!(owner_moves_with_cycle),
                vec![Flaw::OwnerStaleIndex, Flaw::CycleKeepsFrom],
            ),
            (
                check!(deleted_owned_are_not_listed),
                vec![Flaw::OwnerStaleIndex, Flaw::DeleteIsNoop],
            ),
            (
                check!(expired_owned_are_not_listed),
                vec![Flaw::OwnerIgnoresExpiry, Flaw::OwnerStaleIndex],
            ),
        ];
        for ((name, check), flaws) in cases {
            assert!(!catches(Flaw::None, check).await, "{name} fails a correct store");
            for flaw in flaws {
                assert!(catches(flaw, check).await, "{name} does not catch {flaw:?}");
            }
        }
    }

    #[tokio::test]
    async fn native_expiry_accepts_a_store_that_leaves_expiry_to_its_backend() {
        use super::forward::{Forward, Variant};

        /// Leaves expiry to its backend: `delete_expired` removes nothing.
        #[derive(Debug)]
        struct NoExpiry;
        #[async_trait]
        impl Variant<Broken> for NoExpiry {
            async fn delete_expired(&self, _: &Broken, _: OffsetDateTime) -> Result<u64, StoreError> {
                Ok(0)
            }
        }
        let native = || async {
            Forward {
                inner: Broken::new(Flaw::None),
                name: "native",
                variant: NoExpiry,
            }
        };
        run_with(Options::new().native_expiry(true), native).await;
        let strict = tokio::spawn(run(native)).await;
        assert!(strict.is_err_and(|e| e.is_panic()), "the strict run rejects it");
    }

    #[tokio::test]
    async fn run_calls_make_for_a_fresh_store_per_check() {
        let mut made = 0;
        run(|| {
            made += 1;
            async { Broken::new(Flaw::None) }
        })
        .await;
        assert_eq!(made, 27);
    }
}
