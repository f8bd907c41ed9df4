//! The untyped, dict-style session handle.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::config::{SessionExpiry, EXPIRY_KEY};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::owner::{self, OwnedSession};
use crate::record::{owner_of, OWNER_KEY};
use crate::request::state::State;
use crate::request::tracked::Saver;
use crate::request::Inner;

/// The session of the current request, dict-style (Beaker's
/// `environ['beaker.session']`). An axum extractor; clones share one session.
///
/// The session is loaded from the store when first extracted in a request
/// (once, however many extractors ask). Values are JSON through serde_json.
/// Changes are written at the end of the request if [`save`](Self::save)
/// was called or the layer has `auto` on, or at once with
/// [`persist`](Self::persist).
///
/// ```
/// use carafe::Session;
///
/// async fn handler(session: Session) -> String {
///     session.insert("name", "Fred Smith").unwrap();           // session['name'] = 'Fred Smith'
///     let logged_in = session.contains("user_id");             // 'user_id' in session
///     let name: Option<String> = session.get("name").unwrap(); // session['name']
///     session.save();
///     format!("{name:?} {logged_in}")
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl Session {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Session { inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.shared.now()
    }

    /// Sets `key` as a change saved with no `save()` call (flash messages).
    pub(crate) fn insert_auto(&self, key: String, value: Value) -> Result<(), SessionError> {
        let mut state = self.lock();
        if !state.is_live() {
            return Err(SessionError::Deleted);
        }
        state.set(key, value, Saver::Auto);
        Ok(())
    }

    /// Removes `key` as a change saved with no `save()` call.
    pub(crate) fn remove_auto(&self, key: &str) {
        self.lock().remove(key, Saver::Auto);
    }

    /// Takes the keys starting with `prefix` out of the session at once
    /// (see `Inner::take_prefixed`).
    pub(crate) async fn take_prefixed(&self, prefix: &str) -> Result<crate::record::Data, SessionError> {
        self.inner.take_prefixed(prefix).await.map_err(SessionError::from)
    }

    /// Who an untyped write is saved by: the layer's `auto`, or `save()`.
    fn saver(&self) -> Saver {
        if self.inner.shared.config.auto {
            Saver::Auto
        } else {
            Saver::Explicit(None)
        }
    }

    /// Whether the layer saves changes with no `save()` call.
    pub(crate) fn layer_auto(&self) -> bool {
        self.inner.shared.config.auto
    }

    /// The value under `key`, deserialized; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`SessionError::Deserialize`] when the stored value does not fit `T`.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) -> Result<(), carafe::SessionError> {
    /// let visits: u32 = session.get("visits")?.unwrap_or(0);
    /// # Ok(()) }
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.lock();
        match state.tracked.data().get(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value).map(Some).map_err(|source| {
                tracing::debug!(key, error = ?source.classify(), "session value does not fit the type asked for");
                SessionError::Deserialize {
                    key: key.to_owned(),
                    source,
                }
            }),
        }
    }

    /// The raw JSON value under `key`.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// let raw: Option<serde_json::Value> = session.get_value("cart");
    /// # }
    /// ```
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().tracked.data().get(key).cloned()
    }

    /// Stores `value` (owned or borrowed) under `key`. Writing the value a
    /// key already holds is not a change.
    ///
    /// # Errors
    ///
    /// [`SessionError::Serialize`] when `value` cannot be turned into JSON;
    /// [`SessionError::Deleted`] after [`delete`](Self::delete) in this
    /// request. The session is then unchanged.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) -> Result<(), carafe::SessionError> {
    /// session.insert("user_id", 10)?;
    /// # Ok(()) }
    /// ```
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), SessionError> {
        let key = key.into();
        let value = serde_json::to_value(&value).map_err(|source| SessionError::Serialize {
            key: key.clone(),
            source,
        })?;
        let saver = self.saver();
        let mut state = self.lock();
        if !state.is_live() {
            return Err(SessionError::Deleted);
        }
        state.set(key, value, saver);
        Ok(())
    }

    /// Removes `key`, returning its value.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// session.remove("flash");
    /// # }
    /// ```
    pub fn remove(&self, key: &str) -> Option<Value> {
        let saver = self.saver();
        self.lock().remove(key, saver)
    }

    /// Whether `key` holds a value.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// let logged_in = session.contains("user_id");
    /// # }
    /// ```
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.lock().tracked.data().contains_key(key)
    }

    /// Removes every key. The session itself (its id and record) stays; use
    /// [`invalidate`](Self::invalidate) for a new session.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// session.clear();
    /// assert!(session.is_empty());
    /// # }
    /// ```
    pub fn clear(&self) {
        let saver = self.saver();
        self.lock().clear(saver);
    }

    /// The keys, sorted.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// for key in session.keys() { println!("{key}"); }
    /// # }
    /// ```
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().tracked.data().keys().cloned().collect();
        // serde_json's `preserve_order` feature keeps insertion order.
        keys.sort_unstable();
        keys
    }

    /// How many keys the session holds.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// let n = session.len();
    /// # }
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().tracked.data().len()
    }

    /// Whether the session holds no key.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// if session.is_empty() { /* a new visitor */ }
    /// # }
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().tracked.data().is_empty()
    }

    /// Whether the session has changes that a save would write.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// session.insert("a", &1).unwrap();
    /// assert!(session.is_modified());
    /// # }
    /// ```
    #[must_use]
    pub fn is_modified(&self) -> bool {
        self.lock().tracked.is_modified()
    }

    /// The session's id. Treat it as a secret: its `Display` shows only a
    /// hash; [`SessionId::expose`] gives the id itself.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// tracing::info!(session = %session.id(), "hello"); // logs a short hash
    /// # }
    /// ```
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.lock().id.clone()
    }

    /// When the session was created (Beaker's `_creation_time`).
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// let age = session.accessed() - session.created();
    /// # }
    /// ```
    #[must_use]
    pub fn created(&self) -> OffsetDateTime {
        self.lock().created
    }

    /// When this request loaded the session (Beaker's `_accessed_time`).
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// let now = session.accessed();
    /// # }
    /// ```
    #[must_use]
    pub fn accessed(&self) -> OffsetDateTime {
        self.lock().accessed
    }

    /// The previous access as the store recorded it (Beaker's
    /// `last_accessed`): with `save_accessed_time` on, the last access
    /// (refreshed at most once per `accessed_time_interval`); with it off,
    /// the last write. `None` for a new session.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// if session.last_accessed().is_none() { /* first visit */ }
    /// # }
    /// ```
    #[must_use]
    pub fn last_accessed(&self) -> Option<OffsetDateTime> {
        self.lock().last_accessed
    }

    /// Flags the session to be saved at the end of the request (Beaker's
    /// `save()`). Skipped if the response is a 5xx: a request that failed
    /// does not write.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// session.insert("theme", "dark").unwrap();
    /// session.save();
    /// # }
    /// ```
    pub fn save(&self) {
        self.lock().request_save();
    }

    /// Saves the session now (Beaker's `persist()`), whatever the response
    /// will be.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails or times out; the
    /// changes stay pending and a later save retries them.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) -> Result<(), carafe::SessionError> {
    /// session.insert("order", &42)?;
    /// session.persist().await?;
    /// # Ok(()) }
    /// ```
    pub async fn persist(&self) -> Result<(), SessionError> {
        self.inner.persist().await.map_err(SessionError::from)
    }

    /// Deletes the session (Beaker's `delete()`): its record is removed from
    /// the store at the end of the request, even if the handler answers 5xx
    /// or panics, and a browser that sent a session cookie is told to drop
    /// it. The session is over for the rest of the request: it reads as
    /// empty, [`insert`](Self::insert) answers [`SessionError::Deleted`],
    /// and no change made before or after (untyped or through any
    /// [`Typed`](crate::Typed) view) is written. To log out and go on with a
    /// new session in the same request, use [`invalidate`](Self::invalidate).
    ///
    /// ```
    /// async fn logout(session: carafe::Session) -> &'static str {
    ///     session.delete();
    ///     "logged out"
    /// }
    /// ```
    pub fn delete(&self) {
        self.lock().delete();
    }

    /// Invalidates the session (Beaker's `invalidate()`): the old record is
    /// deleted (even if the handler answers 5xx or panics) and a new, empty
    /// session with a new id takes its place for the rest of the request,
    /// saved like any new session if it is modified. Typed views taken
    /// before the call write nothing into the new session. After
    /// [`delete`](Self::delete) it does nothing: a deleted session stays over
    /// for the rest of the request.
    ///
    /// ```
    /// # async fn handler(session: carafe::Session) {
    /// session.invalidate();
    /// session.insert("flash", "please log in again").unwrap();
    /// session.save();
    /// # }
    /// ```
    pub fn invalidate(&self) {
        let now = self.now();
        self.lock().invalidate(now);
    }

    /// Gives the session a new id and keeps its data: the defence against
    /// session fixation, to call whenever privileges change (login). At the
    /// end of the request the record moves to the new id in one atomic store
    /// operation (this implies [`save`](Self::save)) and the old id stops
    /// working. If another request deleted the session meanwhile (a logout),
    /// nothing is created and the browser is told to drop its cookie. If no
    /// data is left ([`clear`](Self::clear) then `cycle_id()`, the Django
    /// `flush()` way to log out), the old record is deleted.
    ///
    /// ```
    /// async fn login(session: carafe::Session) -> &'static str {
    ///     session.insert("user", "ada").unwrap();
    ///     session.cycle_id();
    ///     "logged in"
    /// }
    /// ```
    pub fn cycle_id(&self) {
        self.lock().cycle();
    }

    /// Gives this session its own expiry (Django's `set_expiry`; "remember
    /// me"), replacing the layer's idle timeout, absolute lifetime or cookie
    /// expiry for this session alone, from this request on. It is part of
    /// the session's data (saved at the end of the request like an `auto`
    /// change, whatever the layer's `auto`), so it holds on every store,
    /// moves with the data on [`cycle_id`](Self::cycle_id), and ends with
    /// [`invalidate`](Self::invalidate), [`clear`](Self::clear) and
    /// [`delete`](Self::delete). `SessionExpiry::default()` goes back to
    /// the layer's settings. Durations count in whole seconds.
    ///
    /// # Errors
    ///
    /// [`SessionError::Expiry`] for a zero duration;
    /// [`SessionError::Deleted`] after [`delete`](Self::delete).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// async fn login(session: carafe::Session) -> Result<&'static str, carafe::SessionError> {
    ///     session.cycle_id();
    ///     session.insert("user", "ada")?;
    ///     // "Remember me" for 30 days: the cookie outlives the browser.
    ///     session.set_expiry(carafe::SessionExpiry::remember_for(Duration::from_secs(30 * 86_400)))?;
    ///     Ok("logged in")
    /// }
    /// ```
    pub fn set_expiry(&self, expiry: SessionExpiry) -> Result<(), SessionError> {
        if !expiry.is_valid() {
            return Err(SessionError::Expiry);
        }
        let mut state = self.lock();
        if !state.is_live() {
            return Err(SessionError::Deleted);
        }
        if expiry == SessionExpiry::default() {
            state.remove(EXPIRY_KEY, Saver::Auto);
        } else {
            state.set(EXPIRY_KEY.to_owned(), expiry.to_value(), Saver::Auto);
        }
        state.expiry_changed = true;
        Ok(())
    }

    /// This session's own expiry ([`set_expiry`](Self::set_expiry));
    /// `SessionExpiry::default()` when it follows the layer's settings.
    ///
    /// ```
    /// async fn handler(session: carafe::Session) -> String {
    ///     let remembered = session.expiry().cookie.is_some();
    ///     format!("remembered: {remembered}")
    /// }
    /// ```
    #[must_use]
    pub fn expiry(&self) -> SessionExpiry {
        self.lock()
            .tracked
            .data()
            .get(EXPIRY_KEY)
            .and_then(SessionExpiry::from_value)
            .unwrap_or_default()
    }

    /// Extends the session's life without changing its data: at the end of
    /// the request (or on [`persist`](Self::persist)) its accessed time is
    /// written as now, so the idle timeout counts from now and a `Max-Age`
    /// cookie is renewed. Needed with `save_accessed_time(false)`, where
    /// reading never refreshes it; with the default, reads refresh it at
    /// most once per `accessed_time_interval` and `touch()` forces it. A
    /// session with no record yet (nothing saved) has nothing to extend.
    ///
    /// ```
    /// async fn keep_alive(session: carafe::Session) -> &'static str {
    ///     session.touch();
    ///     "ok"
    /// }
    /// ```
    pub fn touch(&self) {
        self.lock().request_touch();
    }

    /// Marks the session as belonging to `owner`, the application's user
    /// id, so that it shows in that user's list of sessions
    /// ([`owner_sessions`](Self::owner_sessions)) and can be revoked from
    /// another of them. Call it at login, with [`cycle_id`](Self::cycle_id).
    /// The owner is part of the session's data (under
    /// [`store::OWNER_KEY`](crate::store::OWNER_KEY)), saved at the end of
    /// the request whatever the layer's `auto`: it is written with the
    /// save, moves with `cycle_id`, and goes with the session when it is
    /// deleted, invalidated, cleared or expires.
    ///
    /// # Errors
    ///
    /// [`SessionError::Deleted`] after [`delete`](Self::delete).
    ///
    /// ```
    /// async fn login(session: carafe::Session) -> Result<&'static str, carafe::SessionError> {
    ///     session.cycle_id();
    ///     session.set_owner("user-42")?;
    ///     Ok("logged in")
    /// }
    /// ```
    pub fn set_owner(&self, owner: impl Into<String>) -> Result<(), SessionError> {
        let mut state = self.lock();
        if !state.is_live() {
            return Err(SessionError::Deleted);
        }
        state.set(OWNER_KEY.to_owned(), Value::String(owner.into()), Saver::Auto);
        Ok(())
    }

    /// The session's owner ([`set_owner`](Self::set_owner)), if any.
    ///
    /// ```
    /// async fn whoami(session: carafe::Session) -> String {
    ///     session.owner().unwrap_or_else(|| "anonymous".into())
    /// }
    /// ```
    #[must_use]
    pub fn owner(&self) -> Option<String> {
        owner_of(self.lock().tracked.data()).map(str::to_owned)
    }

    /// Removes the session's owner: it no longer shows in any list of
    /// sessions. Saved like [`set_owner`](Self::set_owner).
    ///
    /// ```
    /// async fn forget_me(session: carafe::Session) {
    ///     session.clear_owner();
    ///     assert_eq!(session.owner(), None);
    /// }
    /// ```
    pub fn clear_owner(&self) {
        self.lock().remove(OWNER_KEY, Saver::Auto);
    }

    /// The store keys this request's session is, or is about to be, filed
    /// under: the current id's and, while a cycle is pending, the stored one.
    fn current_keys(&self) -> Vec<crate::id::StoreKey> {
        let state = self.lock();
        let mut keys = vec![state.id.store_key()];
        if let Some(stored) = &state.stored {
            if *stored != state.id {
                keys.push(stored.store_key());
            }
        }
        keys
    }

    /// The live sessions of this session's owner, most recently accessed
    /// first, this one marked `current` (once it is saved: a session whose
    /// first save is still pending is not in the store yet). Empty when
    /// the session has no owner. Expired sessions are never listed.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails, or with
    /// [`StoreError::Unsupported`](crate::StoreError::Unsupported) from the
    /// cookie store or a custom store that cannot list by owner.
    ///
    /// ```
    /// async fn devices(session: carafe::Session) -> Result<String, carafe::SessionError> {
    ///     let sessions = session.owner_sessions().await?;
    ///     let others = sessions.iter().filter(|s| !s.current).count();
    ///     Ok(format!("signed in on {others} other devices"))
    /// }
    /// ```
    pub async fn owner_sessions(&self) -> Result<Vec<OwnedSession>, SessionError> {
        let Some(owner) = self.owner() else {
            return Ok(Vec::new());
        };
        let current = self.current_keys();
        Ok(owner::list(&self.inner.shared, &owner, &current).await?)
    }

    /// Revokes the session of this session's owner that `handle` (from
    /// [`owner_sessions`](Self::owner_sessions)) names: its record is
    /// deleted now, and the browser holding it is anonymous from its next
    /// request on. Answers `Ok(false)`, revoking nothing, for a handle that
    /// names none of the owner's live sessions (unknown, forged, stale, or
    /// another owner's) and when this session has no owner. A handle naming
    /// this very session [`delete`](Self::delete)s it.
    ///
    /// # Errors
    ///
    /// As [`owner_sessions`](Self::owner_sessions).
    ///
    /// ```
    /// use axum::extract::Path;
    /// use axum::http::StatusCode;
    ///
    /// async fn sign_out_device(session: carafe::Session, Path(handle): Path<String>) -> StatusCode {
    ///     match session.revoke(&handle).await {
    ///         Ok(true) => StatusCode::NO_CONTENT,
    ///         Ok(false) => StatusCode::NOT_FOUND,
    ///         Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    ///     }
    /// }
    /// ```
    pub async fn revoke(&self, handle: &str) -> Result<bool, SessionError> {
        let Some(owner) = self.owner() else {
            return Ok(false);
        };
        let shared = &self.inner.shared;
        let Some(key) = owner::find(shared, &owner, handle).await? else {
            return Ok(false);
        };
        if self.current_keys().contains(&key) {
            self.delete();
        } else {
            owner::delete(shared, &key).await?;
        }
        Ok(true)
    }

    /// Revokes every other session of this session's owner (after a
    /// password change: ASVS 3.3.3) and keeps this one. Answers how many
    /// it revoked; 0 when the session has no owner.
    ///
    /// # Errors
    ///
    /// As [`owner_sessions`](Self::owner_sessions); sessions revoked before
    /// a store failure stay revoked.
    ///
    /// ```
    /// async fn change_password(session: carafe::Session) -> Result<String, carafe::SessionError> {
    ///     // ... check the old password, store the new one ...
    ///     session.cycle_id();
    ///     let n = session.revoke_other_sessions().await?;
    ///     Ok(format!("password changed; {n} other sessions signed out"))
    /// }
    /// ```
    pub async fn revoke_other_sessions(&self) -> Result<u64, SessionError> {
        let Some(owner) = self.owner() else {
            return Ok(0);
        };
        let keep = self.current_keys();
        Ok(owner::revoke_all(&self.inner.shared, &owner, &keep).await?)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("id", &state.id)
            .field("len", &state.tracked.data().len())
            .finish_non_exhaustive()
    }
}
