//! The request's session handle: loads the session at most once, carries
//! out the planner's decisions against the backend, and says what the
//! response's cookie must be. The decisions themselves are in `plan`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::backend::{ClientCodec, Kind};
use crate::clock::{now_secs, Clock};
use crate::config::Config;
use crate::error::StoreError;
use crate::id::{SessionId, StoreKey};
use crate::key::Keys;
use crate::record::{Record, SaveOutcome};
use crate::request::plan::{self, CookieDecision, Outcome, Plan, Settled, Write};
use crate::request::state::{Origin, State};
use crate::request::tracked::Diff;
use crate::store::SessionStore;
use crate::wire::{self, CookieAction};

/// How many fresh ids a save tries when the new id is taken (astronomically
/// unlikely with 122 random bits; a store that answers `Conflict` wrongly
/// must not loop forever).
const CREATE_ATTEMPTS: usize = 3;

/// What every request's session shares: configuration, keys, backend, clock.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) keys: Keys,
    pub(crate) backend: crate::backend::Backend,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Shared {
    /// Runs one store call under the store timeout.
    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.config.store_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit)))
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        now_secs(&*self.clock)
    }

    /// Deletes `keys` one by one.
    async fn delete_all(&self, store: &dyn SessionStore, keys: &[StoreKey]) -> Result<(), StoreError> {
        for key in keys {
            self.call(store.delete(key)).await?;
        }
        Ok(())
    }
}

/// The request extension the extractors look for.
#[derive(Clone, Debug)]
pub(crate) struct Handle(pub(crate) Arc<Inner>);

/// One request's session: made by the layer for every request (cheaply:
/// nothing is parsed or loaded), loaded at most once when first extracted.
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    cookies: Vec<HeaderValue>,
    state: OnceCell<Mutex<State>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(shared: Arc<Shared>, cookies: Vec<HeaderValue>) -> Self {
        Inner {
            shared,
            cookies,
            state: OnceCell::new(),
        }
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.state.initialized()
    }

    /// The state; only called on a loaded session.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.get() {
            Some(state) => state.lock().unwrap_or_else(|e| e.into_inner()),
            None => unreachable!("a Session is handed out only after loading"),
        }
    }

    /// Loads the session once per request.
    pub(crate) async fn load(&self) -> Result<(), StoreError> {
        self.state
            .get_or_try_init(|| async { self.read().await.map(Mutex::new) })
            .await
            .map(|_| ())
    }

    async fn read(&self) -> Result<State, StoreError> {
        let shared = &self.shared;
        let now = shared.now();
        let offered = wire::offered(&self.cookies, &shared.config.cookie_name);
        let origin = if offered.any() {
            Origin::Stale
        } else {
            Origin::NoCookie
        };
        match &shared.backend.0 {
            Kind::Client(codec) => Ok(self.read_client(&**codec, &offered.values, origin, now)),
            Kind::Server(store) => {
                let verified = offered.values.iter().find_map(|value| {
                    let verified = shared.keys.verify(value);
                    if verified.is_none() {
                        tracing::debug!(cookie = %wire::fingerprint(value), "session cookie failed verification");
                    }
                    verified
                });
                let Some((id, old_key)) = verified else {
                    return Ok(State::fresh(origin, now));
                };
                self.read_server(&**store, id, old_key, now).await
            }
        }
    }

    fn read_client(
        &self,
        codec: &dyn ClientCodec,
        values: &[String],
        origin: Origin,
        now: OffsetDateTime,
    ) -> State {
        let shared = &self.shared;
        for value in values {
            match codec.decode(&shared.keys, value) {
                Some((id, record)) if !shared.config.lifetime(&record.data).is_expired(&record, now) => {
                    return loaded(&shared.config, id, false, record, now);
                }
                Some(_) => tracing::debug!(cookie = %wire::fingerprint(value), "client-side session expired"),
                None => {
                    tracing::debug!(cookie = %wire::fingerprint(value), "session cookie failed to decrypt")
                }
            }
        }
        State::fresh(origin, now)
    }

    async fn read_server(
        &self,
        store: &dyn SessionStore,
        id: SessionId,
        old_key: bool,
        now: OffsetDateTime,
    ) -> Result<State, StoreError> {
        let shared = &self.shared;
        let key = id.store_key();
        match shared.call(store.load(&key)).await {
            Ok(Some(record)) if shared.config.lifetime(&record.data).is_expired(&record, now) => {
                tracing::debug!(session = %key, "session expired");
                self.forget(store, &key).await;
                Ok(State::fresh(Origin::Stale, now))
            }
            Ok(Some(record)) => Ok(loaded(&shared.config, id, old_key, record, now)),
            // An unknown id is never adopted: the new session gets a new id.
            Ok(None) => Ok(State::fresh(Origin::Stale, now)),
            Err(StoreError::Corrupt(reason)) => {
                tracing::warn!(session = %key, store = store.name(), %reason, "corrupt session record; starting a new session");
                self.forget(store, &key).await;
                Ok(State::fresh(Origin::Stale, now))
            }
            Err(err) => Err(err),
        }
    }

    /// Best-effort removal of an expired or corrupt record.
    async fn forget(&self, store: &dyn SessionStore, key: &StoreKey) {
        if let Err(err) = self.shared.call(store.delete(key)).await {
            tracing::warn!(session = %key, store = store.name(), error = %err, "could not delete a dead session record");
        }
    }

    /// Takes the keys with `prefix` out of the session at once (flash
    /// messages): from the store, atomically, when the session has a record
    /// there, so that of two overlapping requests each key goes to one;
    /// otherwise from the request's data (a new session, or a client-side
    /// one, whose cookie is rewritten without them). A deleted session has
    /// nothing to take, and neither has one whose data, as loaded and
    /// changed here, holds no such key: no store call (a key another
    /// request adds meanwhile is taken by a later request).
    pub(crate) async fn take_prefixed(&self, prefix: &str) -> Result<crate::record::Data, StoreError> {
        let stored = {
            let mut state = self.lock();
            let any = state.tracked.data().keys().any(|key| key.starts_with(prefix));
            if !state.is_live() || !any {
                return Ok(crate::record::Data::new());
            }
            match (&self.shared.backend.0, &state.stored) {
                (Kind::Server(store), Some(id)) => (Arc::clone(store), id.clone()),
                _ => return Ok(state.tracked.take_local(prefix)),
            }
        };
        let (store, id) = stored;
        let from_store = self
            .shared
            .call(store.take_prefixed(&id.store_key(), prefix))
            .await?;
        let mut state = self.lock();
        if state.stored.as_ref() != Some(&id) {
            // Deleted or moved while the store answered: what the store gave
            // is still this request's to show; the request's own copies go.
            let mut taken = state.tracked.take_local(prefix);
            taken.extend(from_store);
            return Ok(taken);
        }
        Ok(state.tracked.took(prefix, from_store))
    }

    /// Writes now (`persist()`).
    pub(crate) async fn persist(&self) -> Result<(), StoreError> {
        self.write(Outcome::Persist).await
    }

    /// The end of the request: writes what is due and says what the cookie
    /// must do.
    pub(crate) async fn finish(&self, outcome: Outcome) -> Result<CookieAction, StoreError> {
        self.write(outcome).await?;
        let shared = &self.shared;
        let state = self.lock();
        if outcome == Outcome::Answered && !plan::saves_all(&state, outcome) {
            for (owner, keys) in state.tracked.unsaved() {
                match owner {
                    Some(owner) => tracing::warn!(
                        r#struct = owner,
                        fields = ?keys,
                        "typed session changes are not saved: the struct is not #[session(auto)] and save() was not called"
                    ),
                    None => {
                        tracing::debug!(keys = ?keys, "session changes are not saved: save() was not called")
                    }
                }
            }
        }
        let client = matches!(shared.backend.0, Kind::Client(_));
        Ok(match plan::cookie(&state, &shared.config, client) {
            CookieDecision::Keep => CookieAction::Keep,
            CookieDecision::Remove => CookieAction::Remove,
            CookieDecision::Set(id) => {
                let expiry = shared.config.lifetime(state.tracked.data()).cookie;
                let value = match &state.client_value {
                    Some(value) if client => value.clone(),
                    _ => shared.keys.sign(&id),
                };
                CookieAction::Set { value, expiry }
            }
        })
    }

    async fn write(&self, outcome: Outcome) -> Result<(), StoreError> {
        let shared = &self.shared;
        for _ in 0..CREATE_ATTEMPTS {
            let now = shared.now();
            let plan = plan::plan(&self.lock(), &shared.config, now, outcome);
            if plan.is_empty() {
                return Ok(());
            }
            let result = match &shared.backend.0 {
                Kind::Server(store) => self.execute(&**store, &plan).await,
                Kind::Client(codec) => self.encode_client(&**codec, &plan),
            };
            if plan::settle(&mut self.lock(), &plan, result, now)? == Settled::Done {
                return Ok(());
            }
        }
        Err(StoreError::Conflict)
    }

    async fn execute(
        &self,
        store: &dyn SessionStore,
        plan: &Plan,
    ) -> Result<Option<SaveOutcome>, StoreError> {
        let shared = &self.shared;
        shared.delete_all(store, &plan.delete).await?;
        let outcome = match &plan.write {
            None => return Ok(None),
            Some(Write::Create { key, change } | Write::Update { key, change }) => {
                shared.call(store.save(key, change)).await?
            }
            Some(Write::Cycle { from, to, change }) => shared.call(store.cycle(from, to, change)).await?,
        };
        Ok(Some(outcome))
    }

    /// For client-side sessions, "writing" is encoding the session into the
    /// cookie value.
    fn encode_client(&self, codec: &dyn ClientCodec, plan: &Plan) -> Result<Option<SaveOutcome>, StoreError> {
        let Some(Write::Create { change, .. } | Write::Update { change, .. } | Write::Cycle { change, .. }) =
            &plan.write
        else {
            return Ok(None);
        };
        let shared = &self.shared;
        let mut state = self.lock();
        let diff = Diff {
            set: change.set.clone(),
            removed: change.removed.clone(),
        };
        let record = Record {
            data: state.tracked.saved_data(&diff),
            created: state.created,
            accessed: change.accessed,
            expires: change.expires,
        };
        let value = codec.encode(&shared.keys, &shared.config, &state.id, &record)?;
        state.client_value = Some(value);
        Ok(Some(SaveOutcome::Saved))
    }
}

/// The state of a session loaded from `record`, with a confirming write due
/// if the record still has the short expiry of an unconfirmed session.
fn loaded(config: &Config, id: SessionId, old_key: bool, record: Record, now: OffsetDateTime) -> State {
    let full = config
        .lifetime(&record.data)
        .expires(record.created, record.accessed);
    let confirm_due = config.unconfirmed_timeout.is_some() && record.expires < full;
    let mut state = State::loaded(id, old_key, record, now);
    state.confirm_due = confirm_due;
    state
}

impl Drop for Inner {
    /// A request that ended without finishing (its future was dropped: the
    /// client went away, or a panic unwound past the layer) still carries
    /// out its deletions, in a task of its own.
    fn drop(&mut self) {
        let Some(state) = self.state.get_mut() else {
            return;
        };
        let state = state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.ended.is_empty() {
            return;
        }
        let Kind::Server(store) = &self.shared.backend.0 else {
            return;
        };
        let keys: Vec<StoreKey> = state.ended.drain(..).map(|id| id.store_key()).collect();
        let (store, shared) = (Arc::clone(store), Arc::clone(&self.shared));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = shared.delete_all(&*store, &keys).await {
                        tracing::error!(store = store.name(), error = %err, "could not delete an ended session");
                    }
                });
            }
            Err(_) => tracing::error!(
                store = store.name(),
                "an ended session could not be deleted: no runtime"
            ),
        }
    }
}
