//! A user's sessions (OWASP's "simultaneous logons", ASVS 3.3.3 and
//! 3.3.4): the sessions an application marked with an owner
//! ([`Session::set_owner`](crate::Session::set_owner)), listed with
//! handles that name them without being their ids, and revoked by handle
//! or all at once.
//!
//! A handle is the base64url HMAC-SHA256 of the session's store key, under
//! a key derived (HKDF) from the layer's current secret for this purpose
//! alone. It is stable across requests, changes when the session's id is
//! cycled (the session is then filed under another key) and when the secret
//! is rotated, and is useless for impersonation: it cannot be turned into
//! the id, and the layer only ever revokes a session through a handle it
//! finds among the sessions of the owner asking.

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::backend::Kind;
use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::OwnedRecord;
use crate::request::Shared;
use crate::store::SessionStore;

/// One live session of an owner, as
/// [`Session::owner_sessions`](crate::Session::owner_sessions) and
/// [`SessionLayer::owner_sessions`](crate::SessionLayer::owner_sessions)
/// list them: most recently accessed first.
///
/// ```
/// async fn devices(session: carafe::Session) -> Result<String, carafe::SessionError> {
///     let mut page = String::new();
///     for s in session.owner_sessions().await? {
///         let marker = if s.current { " (this browser)" } else { "" };
///         page += &format!("{} last seen {}{marker}\n", s.handle, s.accessed);
///     }
///     Ok(page)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnedSession {
    /// Names the session for [`Session::revoke`](crate::Session::revoke):
    /// 43 base64url characters, neither the session id nor its store key.
    pub handle: String,
    /// When the session was created.
    pub created: OffsetDateTime,
    /// When the session was last accessed, as the store holds it.
    pub accessed: OffsetDateTime,
    /// When the session expires unless it is used again.
    pub expires: OffsetDateTime,
    /// Whether this is the session of the request asking.
    pub current: bool,
}

/// The server-side store, or [`StoreError::Unsupported`] for the cookie
/// store, which keeps nothing on the server to list or revoke.
fn server(shared: &Shared) -> Result<&dyn SessionStore, StoreError> {
    match &shared.backend.0 {
        Kind::Server(store) => Ok(&**store),
        Kind::Client(_) => Err(StoreError::Unsupported {
            store: "cookie",
            operation: "list or revoke a user's sessions (rotate the secret to end them all)",
        }),
    }
}

/// The live records of `owner`, expired ones left out by the layer's clock
/// whatever the store answered.
async fn records(shared: &Shared, owner: &str) -> Result<Vec<OwnedRecord>, StoreError> {
    let store = server(shared)?;
    let now = shared.now();
    let mut found = shared.call(store.list_owned(owner, now)).await?;
    found.retain(|record| record.expires > now);
    Ok(found)
}

/// The sessions of `owner`, most recently accessed first; `current` marks
/// the ones filed under a key in `current`.
pub(crate) async fn list(
    shared: &Shared,
    owner: &str,
    current: &[StoreKey],
) -> Result<Vec<OwnedSession>, StoreError> {
    let mut found = records(shared, owner).await?;
    found.sort_by(|a, b| b.accessed.cmp(&a.accessed).then_with(|| a.key.cmp(&b.key)));
    Ok(found
        .into_iter()
        .map(|record| OwnedSession {
            handle: shared.keys.handle(&record.key),
            created: record.created,
            accessed: record.accessed,
            expires: record.expires,
            current: current.contains(&record.key),
        })
        .collect())
}

/// The key of the session of `owner` that `handle` names, if any. Handles
/// are compared in constant time; anything that is not one of the owner's
/// handles (forged, stale, another owner's) is `None`.
pub(crate) async fn find(shared: &Shared, owner: &str, handle: &str) -> Result<Option<StoreKey>, StoreError> {
    let found = records(shared, owner).await?;
    Ok(found
        .into_iter()
        .find(|record| {
            bool::from(
                shared
                    .keys
                    .handle(&record.key)
                    .as_bytes()
                    .ct_eq(handle.as_bytes()),
            )
        })
        .map(|record| record.key))
}

/// Deletes the record filed under `key`.
pub(crate) async fn delete(shared: &Shared, key: &StoreKey) -> Result<(), StoreError> {
    let store = server(shared)?;
    shared.call(store.delete(key)).await
}

/// Deletes every live session of `owner` but those filed under a key in
/// `keep`; answers how many it deleted.
pub(crate) async fn revoke_all(shared: &Shared, owner: &str, keep: &[StoreKey]) -> Result<u64, StoreError> {
    let mut revoked = 0;
    for record in records(shared, owner).await? {
        if !keep.contains(&record.key) {
            delete(shared, &record.key).await?;
            revoked += 1;
        }
    }
    if revoked > 0 {
        tracing::info!(revoked, "revoked a user's sessions");
    }
    Ok(revoked)
}
