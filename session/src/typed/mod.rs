//! Typed sessions: `#[derive(Session)]` structs and the [`Typed`] extractor.

use std::ops::{Deref, DerefMut};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use time::OffsetDateTime;

use crate::error::{SessionError, TypedError};
use crate::extract::SessionRejection;
use crate::id::SessionId;
use crate::request::tracked::Saver;
use crate::session::Session;

mod fields;

use fields::{changes, Baseline};
pub use fields::{Reader, Writer};

/// A struct that is a view of a session's data, one session key per field.
///
/// Implemented by `#[derive(Session)]`; do not implement it by hand (its
/// methods are not part of the public API and may change).
pub trait SessionData: Sized + Send + Sync + 'static {
    /// Whether changes are saved at the end of the request without a call
    /// (`#[session(auto)]`, Beaker's `auto`).
    const AUTO: bool;
    /// The session keys the struct's stored fields use, in declaration order.
    const KEYS: &'static [&'static str];

    #[doc(hidden)]
    fn __load(reader: &mut Reader<'_>) -> Result<Self, TypedError>;

    #[doc(hidden)]
    fn __store(&self, writer: &mut Writer<'_>);
}

/// The typed view of the session: an axum extractor for a
/// `#[derive(Session)]` struct.
///
/// Reads are plain field access through `Deref`. Taking `&mut` (any write)
/// marks the view for a flush: when the `Typed` is dropped (at the latest
/// when the handler returns), each stored field's JSON is compared with its
/// JSON when the view loaded it, and only the fields this view changed are
/// written into the session and handed to the store. A write that restores
/// the old value is no change. Two views of one struct in a request (a
/// middleware's and a handler's) merge field by field.
///
/// With `#[session(auto)]` (or the layer's `auto`) the view's changes are
/// saved at the end of the request; without it, call [`Typed::save`] or
/// [`Typed::persist`] (or `save()` on the session or any other view), or a
/// `tracing` warning names the struct and the fields that were not saved.
///
/// After [`Typed::delete`] or [`Typed::invalidate`] (or the same on the
/// session), views taken before write nothing.
///
/// ```
/// use carafe::{Session, Typed};
///
/// #[derive(Session, Default)]
/// #[session(auto, default, namespace = "visit")]
/// struct Visit {
///     count: u32,
/// }
///
/// async fn index(mut visit: Typed<Visit>) -> String {
///     visit.count += 1;
///     format!("count: {}", visit.count)
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(index));
/// ```
pub struct Typed<T: SessionData> {
    session: Session,
    value: T,
    /// The fields' JSON when loaded or last written; taken at the first
    /// `&mut` (a view never written needs none).
    baseline: Option<Baseline>,
    /// `&mut` was taken since the last flush.
    dirty: bool,
    /// The session's epoch when the view was made: after a `delete()` or
    /// `invalidate()` the view writes nothing.
    epoch: u64,
}

impl<T: SessionData> Typed<T> {
    /// Builds the typed view from an untyped session.
    ///
    /// # Errors
    ///
    /// [`TypedError::Missing`] when a field with no default is missing,
    /// [`TypedError::Invalid`] when one does not deserialize.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// #[derive(Session, Default)]
    /// #[session(default)]
    /// struct Prefs { theme: String }
    ///
    /// async fn handler(session: Session) -> Result<String, carafe::SessionError> {
    ///     let prefs = Typed::<Prefs>::from_session(session)?;
    ///     Ok(prefs.theme.clone())
    /// }
    /// ```
    pub fn from_session(session: Session) -> Result<Self, TypedError> {
        let (value, epoch) = session.with_state(|state| {
            let mut reader = Reader::new::<T>(state.tracked.data());
            T::__load(&mut reader).map(|value| (value, state.epoch))
        })?;
        Ok(Typed {
            session,
            value,
            baseline: None,
            dirty: false,
            epoch,
        })
    }

    /// Puts a whole struct into the session (at login: build an `Auth` and
    /// store it): every stored field is written when the view is flushed,
    /// whatever the session held under its keys.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// #[derive(Session)]
    /// #[session(auto, namespace = "auth")]
    /// struct Auth { user: String, admin: bool }
    ///
    /// async fn login(session: Session) -> &'static str {
    ///     session.cycle_id();
    ///     Typed::insert(session, Auth { user: "ada".into(), admin: false });
    ///     "logged in"
    /// }
    /// ```
    pub fn insert(session: Session, value: T) -> Self {
        let epoch = session.with_state(|state| state.epoch);
        Typed {
            session,
            value,
            baseline: Some(Baseline::unknown()),
            dirty: true,
            epoch,
        }
    }

    /// Writes the fields this view changed into the session now (only
    /// those: a field the view did not change is never written back, even if
    /// the session's value differs). Called by `save`, `persist`,
    /// `cycle_id` and on drop; call it yourself before reading, through the
    /// untyped [`Session`](struct@Session), keys this struct owns in the same
    /// request.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Cart { items: Vec<String> }
    /// async fn handler(mut cart: Typed<Cart>, session: Session) {
    ///     cart.items.push("tea".into());
    ///     cart.flush();
    ///     assert_eq!(session.get::<Vec<String>>("items").unwrap().unwrap().len(), 1);
    /// }
    /// ```
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let Some(old) = &self.baseline else {
            return;
        };
        let (changed, next) = changes(&self.value, old);
        self.baseline = Some(next);
        if changed.is_empty() {
            return;
        }
        let saver = if T::AUTO || self.session.layer_auto() {
            Saver::Auto
        } else {
            Saver::Explicit(Some(std::any::type_name::<T>()))
        };
        let epoch = self.epoch;
        self.session.with_state(|state| {
            if state.epoch != epoch || !state.is_live() {
                tracing::debug!(
                    r#struct = std::any::type_name::<T>(),
                    "typed view from before delete()/invalidate(): its changes are not written"
                );
                return;
            }
            for (key, value) in changed {
                state.set(key.to_owned(), value, saver);
            }
        });
    }

    /// Flags the session to be saved at the end of the request (Beaker's
    /// `save()`), after writing this view's changes into it. Like
    /// [`Session::save`], it saves every change of the session.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Cart { items: Vec<String> }
    /// async fn add(mut cart: Typed<Cart>) {
    ///     cart.items.push("tea".into());
    ///     cart.save();
    /// }
    /// ```
    pub fn save(&mut self) {
        self.flush();
        self.session.save();
    }

    /// Writes this view's changes into the session and stores the session
    /// now (Beaker's `persist()`).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Cart { items: Vec<String> }
    /// async fn add(mut cart: Typed<Cart>) -> Result<(), carafe::SessionError> {
    ///     cart.items.push("tea".into());
    ///     cart.persist().await
    /// }
    /// ```
    pub async fn persist(&mut self) -> Result<(), SessionError> {
        self.flush();
        self.session.persist().await
    }

    /// Deletes the session (see [`Session::delete`]). Neither this view nor
    /// any other writes anything afterwards, whatever it changed before.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn logout(auth: Typed<Auth>) -> &'static str {
    ///     auth.delete();
    ///     "logged out"
    /// }
    /// ```
    pub fn delete(&self) {
        self.session.delete();
    }

    /// Invalidates the session (see [`Session::invalidate`]): this view and
    /// every other view taken before write nothing into the new session.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn reset(auth: Typed<Auth>) {
    ///     auth.invalidate();
    /// }
    /// ```
    pub fn invalidate(&self) {
        self.session.invalidate();
    }

    /// Writes this view's changes, then gives the session a new id keeping
    /// its data (see [`Session::cycle_id`]); call it at login.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn login(mut auth: Typed<Auth>) {
    ///     auth.user = Some("ada".into());
    ///     auth.cycle_id();
    /// }
    /// ```
    pub fn cycle_id(&mut self) {
        self.flush();
        self.session.cycle_id();
    }

    /// The session id (see [`Session::id`]).
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn handler(auth: Typed<Auth>) { let _id = auth.id(); }
    /// ```
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.session.id()
    }

    /// When the session was created (Beaker's `_creation_time`).
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn handler(auth: Typed<Auth>) { assert!(auth.created() <= auth.accessed()); }
    /// ```
    #[must_use]
    pub fn created(&self) -> OffsetDateTime {
        self.session.created()
    }

    /// When the session was loaded by this request (Beaker's `_accessed_time`).
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn handler(auth: Typed<Auth>) { let _t = auth.accessed(); }
    /// ```
    #[must_use]
    pub fn accessed(&self) -> OffsetDateTime {
        self.session.accessed()
    }

    /// The previous access, `None` for a new session (Beaker's `last_accessed`).
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn handler(auth: Typed<Auth>) { let _t = auth.last_accessed(); }
    /// ```
    #[must_use]
    pub fn last_accessed(&self) -> Option<OffsetDateTime> {
        self.session.last_accessed()
    }

    /// The untyped session this view belongs to.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn handler(auth: Typed<Auth>) { let _n = auth.session().len(); }
    /// ```
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl<T: SessionData> Deref for Typed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: SessionData> DerefMut for Typed<T> {
    fn deref_mut(&mut self) -> &mut T {
        if self.baseline.is_none() {
            // Before the first write: the fields as loaded.
            self.baseline = Some(Baseline::of(&self.value));
        }
        self.dirty = true;
        &mut self.value
    }
}

impl<T: SessionData> Drop for Typed<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<T: SessionData + std::fmt::Debug> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData, S: Send + Sync> FromRequestParts<S> for Typed<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        Typed::from_session(session).map_err(SessionRejection::from_typed)
    }
}

/// `Option<Typed<T>>`: `None` when a field of `T` with no default is missing
/// from the session ("maybe logged in"), with nothing logged. A value that
/// is present but does not deserialize is still a rejection (500, logged).
///
/// ```
/// use carafe::{Session, Typed};
///
/// #[derive(Session)]
/// #[session(namespace = "auth")]
/// struct Auth { user: String }
///
/// async fn whoami(auth: Option<Typed<Auth>>) -> String {
///     auth.map_or_else(|| "anonymous".into(), |auth| auth.user.clone())
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(whoami));
/// ```
impl<T: SessionData, S: Send + Sync> OptionalFromRequestParts<S> for Typed<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        match Typed::from_session(session) {
            Ok(typed) => Ok(Some(typed)),
            Err(TypedError::Missing { .. }) => Ok(None),
            Err(err) => Err(SessionRejection::from_typed(err)),
        }
    }
}
