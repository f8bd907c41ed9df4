//! What the fuzz targets in `fuzz/` call (feature `fuzzing`). Not public
//! API: it only wraps internal functions, and may change in any release.

use crate::error::StoreError;
use crate::id::SessionId;
use crate::key::{Key, Keys};
use crate::record::Record;

/// The session-id cookie signer and verifier the layer uses, for one key and cookie name.
#[derive(Debug, Clone)]
pub struct Verifier(Keys);

impl Verifier {
    /// A verifier with `key` as its only key, for the cookie named `cookie_name`.
    #[must_use]
    pub fn new(key: Key, cookie_name: &str) -> Self {
        Verifier(Keys::new(key, Vec::new(), cookie_name))
    }

    /// The signed cookie value `<id>.<tag>` for `id`.
    #[must_use]
    pub fn sign(&self, id: &SessionId) -> String {
        self.0.sign(id)
    }

    /// The id in a signed cookie value, if its tag verifies.
    #[must_use]
    pub fn verify(&self, value: &str) -> Option<SessionId> {
        self.0.verify(value).map(|(id, _)| id)
    }
}

/// Decodes a record file's contents as the file store does: `Corrupt` if over `limit` bytes or not a record.
pub fn decode_record(bytes: &[u8], limit: usize) -> Result<Record, StoreError> {
    crate::store::decode_record(bytes, limit)
}
