//! Typed sessions: `#[derive(Session)]` structs and the [`Typed`] extractor.

use std::ops::{Deref, DerefMut};

use axum::extract::FromRequestParts;
use http::request::Parts;
use time::OffsetDateTime;

use crate::__private::{Reader, Writer};
use crate::error::{SessionError, TypedError};
use crate::extract::SessionRejection;
use crate::id::SessionId;
use crate::record::Data;
use crate::session::Session;

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
/// when the handler returns), each stored field is compared with the
/// session's value and only the fields whose value changed are written back
/// and handed to the store. A write that restores the old value is no change.
///
/// With `#[session(auto)]` the changes are saved at the end of the request;
/// without it, call [`Typed::save`] or [`Typed::persist`].
///
/// After [`Typed::delete`] or [`Typed::invalidate`] the view is detached:
/// its fields keep their values, but changes to them are no longer written
/// to the session.
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
    baseline: Data,
    touched: bool,
    detached: bool,
}

impl<T: SessionData> Typed<T> {
    /// Builds the typed view from an untyped session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Typed`] when a field with no default is missing or
    /// does not deserialize.
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
    pub fn from_session(session: Session) -> Result<Self, SessionError> {
        let (value, baseline) = session.with_data(|data| {
            let mut reader = Reader::new::<T>(data);
            T::__load(&mut reader).map(|value| (value, reader.into_baseline()))
        })?;
        Ok(Typed {
            session,
            value,
            baseline,
            touched: false,
            detached: false,
        })
    }

    /// Writes changed fields into the session now. Called by `save`,
    /// `persist`, `cycle_id` and on drop; call it yourself before using the
    /// untyped [`Session`](struct@Session) for keys this struct owns in the same request.
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
        if !self.touched || self.detached {
            return;
        }
        self.touched = false;
        let changed = self
            .session
            .with_state(|state| crate::__private::store(&self.value, state, &self.baseline));
        if changed && T::AUTO {
            self.session.save();
        }
    }

    /// Flags the session to be saved at the end of the request (Beaker's
    /// `save()`), after writing this struct's changes into it.
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
        self.touched = true;
        self.flush();
        self.session.save();
    }

    /// Writes this struct's changes into the session and stores the session
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
        self.touched = true;
        self.flush();
        self.session.persist().await
    }

    /// Deletes the session (see [`Session::delete`]) and detaches this view.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn logout(mut auth: Typed<Auth>) -> &'static str {
    ///     auth.delete();
    ///     "logged out"
    /// }
    /// ```
    pub fn delete(&mut self) {
        self.detached = true;
        self.session.delete();
    }

    /// Invalidates the session (see [`Session::invalidate`]) and detaches
    /// this view.
    ///
    /// ```
    /// # use carafe::{Session, Typed};
    /// # #[derive(Session, Default)] #[session(default)] struct Auth { user: Option<String> }
    /// async fn reset(mut auth: Typed<Auth>) {
    ///     auth.invalidate();
    /// }
    /// ```
    pub fn invalidate(&mut self) {
        self.detached = true;
        self.session.invalidate();
    }

    /// Gives the session a new id, keeping its data (see
    /// [`Session::cycle_id`]); call it at login.
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
        self.touched = true;
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
