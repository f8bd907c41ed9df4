//! The per-request session state: what was loaded, what changed, and what
//! must happen to the store and the cookie at the end of the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cookie::Cookie;
use http::HeaderValue;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::clock::now_secs;
use crate::config::{Config, CookieExpiry};
use crate::error::StoreError;
use crate::id::{SessionId, StoreKey};
use crate::key::Keys;
use crate::layer::Shared;
use crate::record::{Change, Data, Record, SaveKind, SaveOutcome};

/// How a client-side store turns a session into a cookie value and back.
/// Implemented by the cookie store; server-side stores leave
/// [`Shared::client`] empty.
pub(crate) trait ClientCodec: Send + Sync + std::fmt::Debug {
    /// The session in a cookie value, or `None` for anything that does not
    /// decrypt and decode (never an error: a bad cookie is no session).
    fn decode(&self, keys: &Keys, value: &str) -> Option<(SessionId, Record)>;
    /// The cookie value for a session. `config` gives the cookie's name and
    /// attributes, so that the codec can measure the whole `Set-Cookie`.
    fn encode(
        &self,
        keys: &Keys,
        config: &Config,
        id: &SessionId,
        record: &Record,
    ) -> Result<String, StoreError>;
}

/// One request's session: created by the layer for every request (cheaply:
/// nothing is parsed or loaded), loaded at most once when first extracted.
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    cookies: Vec<HeaderValue>,
    state: OnceCell<Mutex<State>>,
}

/// The loaded session.
pub(crate) struct State {
    pub(crate) id: SessionId,
    /// A record exists under `id` in the store.
    stored: bool,
    pub(crate) data: Data,
    /// For each key changed since the last write: its value then.
    originals: HashMap<String, Option<Value>>,
    pub(crate) created: OffsetDateTime,
    pub(crate) accessed: OffsetDateTime,
    pub(crate) last_accessed: Option<OffsetDateTime>,
    /// The accessed time the store holds, for deciding whether a refresh is due.
    stored_accessed: Option<OffsetDateTime>,
    save_requested: bool,
    /// Ids ended by `delete`/`invalidate`: deleted from the store at the end
    /// of the request, whatever the response.
    ended: Vec<SessionId>,
    /// Ids replaced by `cycle_id`: deleted once the new record is written.
    replaced: Vec<SessionId>,
    /// The session was deleted: send an expiring cookie unless a new one is
    /// stored.
    deleted: bool,
    /// A record was created (or its cookie expiry refreshed) by a write
    /// during the request: the cookie must go out.
    cookie_due: bool,
    /// For client-side sessions: the encoded session to send.
    client_value: Option<String>,
}

/// What the store must do.
#[derive(Default)]
pub(crate) struct Plan {
    ended: Vec<StoreKey>,
    save: Option<(StoreKey, Change)>,
    replaced: Vec<StoreKey>,
    /// The change-tracking baseline taken for this write, restored if it fails.
    originals: HashMap<String, Option<Value>>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.ended.is_empty() && self.save.is_none() && self.replaced.is_empty()
    }
}

/// What the response must carry.
pub(crate) enum CookieAction {
    Set(Cookie<'static>),
    Remove(Cookie<'static>),
}

impl State {
    fn fresh(now: OffsetDateTime) -> Self {
        State {
            id: SessionId::generate(),
            stored: false,
            data: Data::new(),
            originals: HashMap::new(),
            created: now,
            accessed: now,
            last_accessed: None,
            stored_accessed: None,
            save_requested: false,
            ended: Vec::new(),
            replaced: Vec::new(),
            deleted: false,
            cookie_due: false,
            client_value: None,
        }
    }

    fn from_record(id: SessionId, record: Record, now: OffsetDateTime) -> Self {
        State {
            id,
            stored: true,
            data: record.data,
            originals: HashMap::new(),
            created: record.created,
            accessed: now,
            last_accessed: Some(record.accessed),
            stored_accessed: Some(record.accessed),
            save_requested: false,
            ended: Vec::new(),
            replaced: Vec::new(),
            deleted: false,
            cookie_due: false,
            client_value: None,
        }
    }

    fn track(&mut self, key: &str) {
        if !self.originals.contains_key(key) {
            let before = self.data.get(key).cloned();
            self.originals.insert(key.to_owned(), before);
        }
    }

    pub(crate) fn set(&mut self, key: String, value: Value) {
        self.track(&key);
        self.data.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        if self.data.contains_key(key) {
            self.track(key);
        }
        self.data.remove(key)
    }

    pub(crate) fn clear(&mut self) {
        let keys: Vec<String> = self.data.keys().cloned().collect();
        for key in &keys {
            self.track(key);
        }
        self.data.clear();
    }

    pub(crate) fn request_save(&mut self) {
        self.save_requested = true;
    }

    /// `delete()` and `invalidate()`: the old record goes, a new empty
    /// session with a new id takes its place.
    pub(crate) fn end(&mut self, now: OffsetDateTime) {
        let old = std::mem::replace(self, State::fresh(now));
        self.ended = old.ended;
        self.ended.extend(old.replaced);
        if old.stored {
            self.ended.push(old.id);
        }
        self.deleted = true;
    }

    /// `cycle_id()`: a new id for the same data; the old record goes once
    /// the new one is written.
    pub(crate) fn cycle(&mut self) {
        let old = std::mem::replace(&mut self.id, SessionId::generate());
        if self.stored {
            self.replaced.push(old);
        }
        self.stored = false;
        self.stored_accessed = None;
        self.originals.clear();
        self.save_requested = true;
    }

    /// The keys set and removed since the last write.
    fn diff(&self) -> (Data, Vec<String>) {
        let mut set = Data::new();
        let mut removed = Vec::new();
        for (key, before) in &self.originals {
            let now = self.data.get(key);
            if now != before.as_ref() {
                match now {
                    Some(value) => {
                        set.insert(key.clone(), value.clone());
                    }
                    None => removed.push(key.clone()),
                }
            }
        }
        (set, removed)
    }

    /// Whether anything would be written by a save.
    pub(crate) fn is_modified(&self) -> bool {
        if self.stored {
            self.originals
                .iter()
                .any(|(key, before)| self.data.get(key) != before.as_ref())
        } else {
            !self.data.is_empty()
        }
    }

    /// Decides what the store must do. `force` is an explicit `persist()`;
    /// `failed` means the handler answered 5xx: then only ended sessions are
    /// deleted and nothing is written.
    fn plan(&mut self, config: &Config, now: OffsetDateTime, force: bool, failed: bool) -> Plan {
        let mut plan = Plan {
            ended: self.ended.drain(..).map(|id| id.store_key()).collect(),
            ..Plan::default()
        };
        if failed {
            return plan;
        }
        let wanted = force || self.save_requested || (config.auto && self.is_modified());
        let expires = config.expires(self.created, now);
        if !self.stored {
            if wanted && !self.data.is_empty() {
                plan.save = Some((
                    self.id.store_key(),
                    Change {
                        kind: SaveKind::Create,
                        set: self.data.clone(),
                        removed: Vec::new(),
                        created: self.created,
                        accessed: now,
                        expires,
                    },
                ));
                plan.replaced = self.replaced.iter().map(SessionId::store_key).collect();
                plan.originals = std::mem::take(&mut self.originals);
            }
            return plan;
        }
        let (set, removed) = if wanted {
            self.diff()
        } else {
            (Data::new(), Vec::new())
        };
        let touch_due = config.save_accessed_time
            && self
                .stored_accessed
                .is_none_or(|at| now - at >= config.accessed_refresh);
        if !set.is_empty() || !removed.is_empty() || touch_due {
            plan.save = Some((
                self.id.store_key(),
                Change {
                    kind: SaveKind::Update,
                    set,
                    removed,
                    created: self.created,
                    accessed: now,
                    expires,
                },
            ));
            if wanted {
                plan.originals = std::mem::take(&mut self.originals);
            }
        }
        plan
    }

    /// Records the result of carrying out `plan`.
    fn settle(
        &mut self,
        config: &Config,
        plan: Plan,
        result: &Result<Option<SaveOutcome>, StoreError>,
        now: OffsetDateTime,
    ) {
        match result {
            Ok(Some(SaveOutcome::Saved)) => {
                let created = matches!(
                    plan.save,
                    Some((
                        _,
                        Change {
                            kind: SaveKind::Create,
                            ..
                        }
                    ))
                );
                if created {
                    self.stored = true;
                    self.replaced.clear();
                    self.deleted = false;
                }
                self.stored_accessed = Some(now);
                self.save_requested = false;
                if created || matches!(config.cookie_expires, CookieExpiry::MaxAge(_)) {
                    self.cookie_due = true;
                }
            }
            Ok(Some(SaveOutcome::Missing)) => {
                // Deleted by another request (a logout): never bring it back,
                // and leave the browser's cookie to whoever set the newest.
                tracing::debug!(session = %self.id, "session was deleted meanwhile; not saved");
                let ended = std::mem::take(&mut self.ended);
                *self = State::fresh(now);
                self.ended = ended;
            }
            Ok(None) => {}
            Err(_) => {
                // Restore the change tracking so a later save can retry.
                for (key, before) in plan.originals {
                    self.originals.insert(key, before);
                }
            }
        }
    }

    /// For client-side sessions, "writing" is encoding the whole session
    /// into the cookie value.
    fn encode_client(
        &mut self,
        codec: &dyn ClientCodec,
        keys: &Keys,
        config: &Config,
        plan: &Plan,
    ) -> Result<Option<SaveOutcome>, StoreError> {
        let Some((_, change)) = &plan.save else {
            return Ok(None);
        };
        let record = Record {
            data: self.data.clone(),
            created: self.created,
            accessed: change.accessed,
            expires: change.expires,
        };
        self.client_value = Some(codec.encode(keys, config, &self.id, &record)?);
        Ok(Some(SaveOutcome::Saved))
    }

    fn cookie_action(&self, shared: &Shared, now: OffsetDateTime) -> Option<CookieAction> {
        if let (Some(value), true) = (&self.client_value, self.stored) {
            return Some(CookieAction::Set(session_cookie(
                &shared.config,
                value.clone(),
                now,
            )));
        }
        if self.cookie_due && self.stored {
            Some(CookieAction::Set(session_cookie(
                &shared.config,
                shared.keys.sign(&self.id),
                now,
            )))
        } else if self.deleted && !self.stored {
            Some(CookieAction::Remove(removal_cookie(&shared.config)))
        } else {
            None
        }
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

    /// The session id in the request's cookie, if one verifies.
    fn cookie_id(&self) -> Option<SessionId> {
        self.find_cookie(|value| self.shared.keys.verify(value))
    }

    /// The first of the request's session cookies (by name) that `decode`
    /// accepts.
    fn find_cookie<T>(&self, mut decode: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let name = self.shared.config.cookie_name.as_str();
        self.cookies
            .iter()
            .filter_map(|header| header.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|cookie| cookie.name() == name)
            .find_map(|cookie| decode(cookie.value()))
    }

    /// A client-side session: the cookie is the record.
    fn read_client(&self, codec: &dyn ClientCodec, now: OffsetDateTime) -> State {
        let shared = &self.shared;
        match self.find_cookie(|value| codec.decode(&shared.keys, value)) {
            Some((id, record)) if !shared.is_expired(&record, now) => State::from_record(id, record, now),
            Some(_) => {
                tracing::debug!("client-side session expired");
                State::fresh(now)
            }
            None => State::fresh(now),
        }
    }

    async fn read(&self) -> Result<State, StoreError> {
        let shared = &self.shared;
        let now = now_secs(&*shared.clock);
        if let Some(codec) = &shared.client {
            return Ok(self.read_client(&**codec, now));
        }
        let Some(id) = self.cookie_id() else {
            return Ok(State::fresh(now));
        };
        let key = id.store_key();
        match shared.call(shared.store.load(&key)).await {
            Ok(Some(record)) => {
                if shared.is_expired(&record, now) {
                    tracing::debug!(session = %key, "session expired");
                    self.forget(&key).await;
                    Ok(State::fresh(now))
                } else {
                    Ok(State::from_record(id, record, now))
                }
            }
            // An unknown id is never adopted: the new session gets a new id.
            Ok(None) => Ok(State::fresh(now)),
            Err(StoreError::Corrupt(reason)) => {
                tracing::warn!(session = %key, store = shared.store.name(), %reason, "corrupt session record; starting a new session");
                self.forget(&key).await;
                Ok(State::fresh(now))
            }
            Err(err) => Err(err),
        }
    }

    /// Best-effort removal of an expired or corrupt record.
    async fn forget(&self, key: &StoreKey) {
        if let Err(err) = self.shared.call(self.shared.store.delete(key)).await {
            tracing::warn!(session = %key, store = self.shared.store.name(), error = %err, "could not delete a dead session record");
        }
    }

    /// Writes now (`persist()`).
    pub(crate) async fn persist(&self) -> Result<(), StoreError> {
        self.write(true, false).await.map(|_| ())
    }

    /// The end of the request: writes what is due and says what the cookie
    /// must do.
    pub(crate) async fn finish(&self, failed: bool) -> Result<Option<CookieAction>, StoreError> {
        self.write(false, failed).await?;
        let now = now_secs(&*self.shared.clock);
        Ok(self.lock().cookie_action(&self.shared, now))
    }

    async fn write(&self, force: bool, failed: bool) -> Result<Option<SaveOutcome>, StoreError> {
        let shared = &self.shared;
        let now = now_secs(&*shared.clock);
        let plan = self.lock().plan(&shared.config, now, force, failed);
        if plan.is_empty() {
            return Ok(None);
        }
        if let Some(codec) = &shared.client {
            let mut state = self.lock();
            let result = state.encode_client(&**codec, &shared.keys, &shared.config, &plan);
            state.settle(&shared.config, plan, &result, now);
            return result;
        }
        let result = self.execute(&plan).await;
        self.lock().settle(&shared.config, plan, &result, now);
        result
    }

    async fn execute(&self, plan: &Plan) -> Result<Option<SaveOutcome>, StoreError> {
        let shared = &self.shared;
        for key in &plan.ended {
            shared.call(shared.store.delete(key)).await?;
        }
        let Some((key, change)) = &plan.save else {
            return Ok(None);
        };
        let outcome = shared.call(shared.store.save(key, change)).await?;
        if outcome == SaveOutcome::Saved {
            for old in &plan.replaced {
                shared.call(shared.store.delete(old)).await?;
            }
        }
        Ok(Some(outcome))
    }
}

fn base_cookie(config: &Config, value: String) -> cookie::CookieBuilder<'static> {
    let mut builder = Cookie::build((config.cookie_name.clone(), value))
        .path(config.cookie_path.clone())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(config.same_site);
    if let Some(domain) = &config.cookie_domain {
        builder = builder.domain(domain.clone());
    }
    builder
}

pub(crate) fn session_cookie(config: &Config, value: String, now: OffsetDateTime) -> Cookie<'static> {
    let builder = base_cookie(config, value);
    match config.cookie_expires {
        CookieExpiry::BrowserSession => builder.build(),
        CookieExpiry::MaxAge(age) => builder.max_age(age).expires(now.saturating_add(age)).build(),
        CookieExpiry::At(at) => builder.expires(at).build(),
    }
}

pub(crate) fn removal_cookie(config: &Config) -> Cookie<'static> {
    base_cookie(config, String::new())
        .max_age(time::Duration::ZERO)
        .expires(OffsetDateTime::UNIX_EPOCH)
        .build()
}
