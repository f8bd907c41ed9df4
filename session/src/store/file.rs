//! A store that keeps one JSON file per session in a directory (Beaker's
//! `session.type = file`).
//!
//! Layout: `<dir>/<store key>.json`, where the store key is the 64-hex
//! SHA-256 of the session id (never the id itself), holding the [`Record`]
//! as JSON. Writes go to a temporary file in the same directory
//! (`.<store key>.<random>.tmp`, mode 0600), are flushed to disk and renamed
//! over the record, so a crash leaves either the old record or the new one,
//! never a torn one.
//!
//! Locking is per session and in-process: several servers (or processes)
//! sharing one directory are not coordinated and can lose each other's
//! updates. For more than one server use the Redis or PostgreSQL store.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::record::{Change, Data, OwnedRecord, Record, SaveKind, SaveOutcome};
use crate::store::SessionStore;

/// The number of lock stripes; a key's stripe is its first byte.
const STRIPES: usize = 256;

/// Temporary files older than this are left-overs of a crash and are
/// removed by [`FileStore::delete_expired`].
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// One JSON file per session in a directory: the embedded store for a
/// single server.
///
/// * Records are files named after the session's [`StoreKey`] (a hash of the
///   session id), so the directory never holds a usable session id.
/// * Files are created with mode 0600 and the directory, when the store
///   creates it, with mode 0700 (on Unix). An existing directory owned by
///   another user, or writable by group or others, is refused
///   ([`StoreError::UnsafeDirectory`]).
/// * Records are opened without following symbolic links (`O_NOFOLLOW`),
///   and the opened file, not the path, must be a regular file: a link or
///   FIFO planted under a record's name loads as [`StoreError::Corrupt`].
/// * Saves are atomic (write to a temporary file, `fsync`, rename) and
///   merge under a per-session lock, so two overlapping requests that change
///   different keys both keep their changes.
/// * A file that is not a valid record, or is larger than
///   [`max_record_bytes`](FileStore::max_record_bytes), loads as
///   [`StoreError::Corrupt`]; [`delete_expired`](SessionStore::delete_expired)
///   removes such files along with expired records.
///
/// [`list_owned`](SessionStore::list_owned) reads every record file in
/// the directory: the records themselves are the only index, so there is
/// nothing that a crash could leave out of step with them, and no stale
/// entry can ever name a deleted, expired or re-owned session. The cost is
/// one read per stored session for each listing (as for
/// [`delete_expired`](SessionStore::delete_expired)), which suits the
/// one-server deployments the store is for.
///
/// The locks live in this process: **several processes sharing one
/// directory are not coordinated** and may lose updates (a create may also
/// overwrite another process's record under the same key, which with
/// 122-bit random ids does not happen in practice). Use the Redis or
/// PostgreSQL store when more than one server handles the sessions.
///
/// Clones share the directory and the locks.
///
/// ```
/// use carafe::{FileStore, SessionStore};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path().join("sessions");
/// let store = FileStore::new(&dir)?.max_record_bytes(1024 * 1024);
/// assert_eq!(store.name(), "file");
/// assert!(dir.is_dir());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
    max_record_bytes: usize,
}

struct Inner {
    dir: PathBuf,
    locks: Vec<Arc<Mutex<()>>>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// The default for [`FileStore::max_record_bytes`]: 4 MiB.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = crate::store::DEFAULT_MAX_RECORD_BYTES;

    /// A store keeping its files in `dir`, which is created (with its
    /// parents, mode 0700 on Unix) if missing. An existing directory is used
    /// as it is (its permissions are not changed) if it is safe: on Unix it
    /// must belong to the process's user and be neither group- nor
    /// world-writable, since whoever can write to it could plant or replace
    /// session records.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// let store = carafe::FileStore::new(tmp.path().join("sessions"))?;
    /// assert_eq!(store.dir(), tmp.path().join("sessions"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the directory cannot be created, or `dir`
    /// exists and is not a directory; [`StoreError::UnsafeDirectory`] when
    /// it is owned by another user or writable by group or others.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[cfg(unix)] {
    /// use std::os::unix::fs::PermissionsExt;
    /// let tmp = tempfile::tempdir()?;
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777))?;
    /// let err = carafe::FileStore::new(tmp.path()).unwrap_err();
    /// assert!(matches!(err, carafe::StoreError::UnsafeDirectory { .. }));
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        let meta = fs::metadata(&dir)?;
        if !meta.is_dir() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", dir.display()),
            )));
        }
        if let Some(problem) = unsafe_dir(&meta) {
            return Err(StoreError::UnsafeDirectory { path: dir, problem });
        }
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir,
                locks: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(),
            }),
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
        })
    }

    /// Sets the largest record, in bytes of JSON, the store writes or reads
    /// (default [`FileStore::DEFAULT_MAX_RECORD_BYTES`]). A save that would
    /// exceed it fails with [`StoreError::TooLarge`]; a larger file on disk
    /// loads as [`StoreError::Corrupt`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// let store = carafe::FileStore::new(tmp.path())?.max_record_bytes(64 * 1024);
    /// assert_eq!(store.record_limit(), 64 * 1024);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// The largest record the store writes or reads, in bytes.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// let store = carafe::FileStore::new(tmp.path())?;
    /// assert_eq!(store.record_limit(), carafe::FileStore::DEFAULT_MAX_RECORD_BYTES);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn record_limit(&self) -> usize {
        self.max_record_bytes
    }

    /// The directory the records are kept in.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// let store = carafe::FileStore::new(tmp.path())?;
    /// assert_eq!(store.dir(), tmp.path());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Takes the lock of `key`'s stripe. The guard is owned so that it can
    /// move into the blocking task: the lock is held until the file work is
    /// done even if the caller's future is dropped (a store timeout).
    async fn lock(&self, key: &StoreKey) -> OwnedMutexGuard<()> {
        let stripe = stripe(key.as_str());
        Arc::clone(&self.inner.locks[stripe]).lock_owned().await
    }

    /// Takes the locks of `a`'s and `b`'s stripes, lowest stripe first so
    /// that two overlapping cycles never wait for each other in a circle;
    /// keys on the same stripe take its lock once.
    async fn lock_two(
        &self,
        a: &StoreKey,
        b: &StoreKey,
    ) -> (OwnedMutexGuard<()>, Option<OwnedMutexGuard<()>>) {
        let (sa, sb) = (stripe(a.as_str()), stripe(b.as_str()));
        let take = |s: usize| Arc::clone(&self.inner.locks[s]).lock_owned();
        match sa.cmp(&sb) {
            std::cmp::Ordering::Equal => (take(sa).await, None),
            std::cmp::Ordering::Less => {
                let first = take(sa).await;
                (first, Some(take(sb).await))
            }
            std::cmp::Ordering::Greater => {
                let first = take(sb).await;
                (first, Some(take(sa).await))
            }
        }
    }

    /// Runs file work on the blocking pool.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner.dir))
            .await
            .map_err(StoreError::backend)?
    }
}

/// The lock stripe of a key: its first byte (two hex digits).
fn stripe(key: &str) -> usize {
    key.bytes()
        .take(2)
        .fold(0usize, |acc, b| (acc << 4) | usize::from(hex_value(b)))
        % STRIPES
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => 0,
    }
}

/// The record file of `key`, after checking the key once more (defence in
/// depth: a `StoreKey` is always 64 lowercase hex digits).
fn record_path(dir: &Path, key: &StoreKey) -> Result<PathBuf, StoreError> {
    let key = StoreKey::parse(key.as_str()).ok_or_else(|| {
        StoreError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "store key is not 64 lowercase hex digits",
        ))
    })?;
    Ok(dir.join(format!("{}.json", key.as_str())))
}

/// The store key a directory entry is the record of, if its name is
/// `<64 lowercase hex>.json`.
fn record_key(name: &str) -> Option<StoreKey> {
    name.strip_suffix(".json").and_then(StoreKey::parse)
}

/// Whether a directory entry is one of this store's temporary files:
/// `.<64 hex>.<32 hex>.tmp`.
fn is_temp_name(name: &str) -> bool {
    let Some(middle) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((key, random)) = middle.split_once('.') else {
        return false;
    };
    StoreKey::parse(key).is_some()
        && random.len() == 32
        && random.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What makes the data directory unsafe, if anything: on Unix, another
/// user owns it, or its group or others may write to it.
#[cfg(unix)]
fn unsafe_dir(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != rustix::process::geteuid().as_raw() {
        Some("it is owned by another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("it is writable by its group or by others")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn unsafe_dir(_: &fs::Metadata) -> Option<&'static str> {
    None
}

/// Opens `path` for reading without following a symbolic link in its last
/// component (a link planted in the directory is never followed out of it).
fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Also O_NONBLOCK: opening a FIFO planted under a record's name
        // must not hang; the type check below refuses it.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.custom_flags(flags.bits() as i32);
    }
    options.open(path)
}

/// Reads the record at `path`: `None` if there is no file, `Corrupt` if it is
/// not a regular file, is larger than `limit` or is not a record.
fn read_record(path: &Path, limit: usize) -> Result<Option<Record>, StoreError> {
    let file = match open_no_follow(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the name is a symbolic link.
        #[cfg(unix)]
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(StoreError::Corrupt("record is not a regular file".into()));
        }
        Err(err) => return Err(err.into()),
    };
    // The opened file's type, not the path's: nothing can swap it between
    // the check and the read.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(StoreError::Corrupt("record is not a regular file".into()));
    }
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        // The size on disk: the read stopped one byte past the limit.
        let size = meta.len();
        return Err(StoreError::Corrupt(format!(
            "record file is {size} bytes, larger than the limit of {limit} bytes"
        )));
    }
    decode_record(&bytes, limit).map(Some)
}

/// Decodes a record file's contents: `Corrupt` if they are larger than
/// `limit` or are not a record.
pub(crate) fn decode_record(bytes: &[u8], limit: usize) -> Result<Record, StoreError> {
    if bytes.len() > limit {
        return Err(StoreError::Corrupt(format!(
            "record file is larger than the limit of {limit} bytes"
        )));
    }
    serde_json::from_slice::<Record>(bytes)
        .map_err(|err| StoreError::Corrupt(format!("record file is not a session record: {err}")))
}

/// Encodes `record`, refusing one larger than `limit`.
fn encode(record: &Record, limit: usize) -> Result<Vec<u8>, StoreError> {
    let bytes = serde_json::to_vec(record).map_err(StoreError::backend)?;
    if bytes.len() > limit {
        return Err(StoreError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `key`'s record file atomically: a temporary file in the
/// same directory, `fsync`, rename over the record.
fn write_atomic(dir: &Path, key: &StoreKey, bytes: &[u8]) -> Result<(), StoreError> {
    let target = record_path(dir, key)?;
    let temp = dir.join(format!(".{}.{}.tmp", key.as_str(), uuid::Uuid::new_v4().simple()));
    let result = (|| -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &target)
    })();
    if let Err(err) = result {
        // Best effort: a left-over is removed by `delete_expired` later.
        let _ = fs::remove_file(&temp);
        return Err(err.into());
    }
    // Make the rename itself durable.
    sync_dir(dir);
    Ok(())
}

/// Flushes the directory's entries to disk, so that a rename or removal
/// survives a crash. Best effort: some file systems refuse to sync a
/// directory, and the operation itself has happened either way.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Moves `from`'s record to `to` with `change` merged in (under both keys'
/// locks). The merged record is first written over `from` (write to a
/// temporary file, `fsync`, rename), then `from` is renamed to `to`: one
/// `rename(2)`, so a reader without the lock sees the record under exactly
/// one of the two names at any time, never under both or neither. A crash
/// between the two steps leaves the merged record under `from`, as an
/// update would have.
fn cycle_files(
    dir: &Path,
    from: &StoreKey,
    to: &StoreKey,
    change: &Change,
    limit: usize,
) -> Result<SaveOutcome, StoreError> {
    let from_path = record_path(dir, from)?;
    let to_path = record_path(dir, to)?;
    match fs::symlink_metadata(&to_path) {
        Ok(_) => return Err(StoreError::Conflict),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    let Some(mut record) = read_record(&from_path, limit)? else {
        return Ok(SaveOutcome::Missing);
    };
    change.apply(&mut record);
    let bytes = encode(&record, limit)?;
    write_atomic(dir, from, &bytes)?;
    fs::rename(&from_path, &to_path)?;
    sync_dir(dir);
    Ok(SaveOutcome::Saved)
}

/// Removes `path`; a missing file is not an error.
fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// What a scan of the directory found.
struct Scan {
    /// Records that looked expired or corrupt, to re-check under their lock.
    candidates: Vec<StoreKey>,
}

/// Lists the directory: collects record files that are expired (or corrupt)
/// and removes stale temporary files. Touches no other file.
fn scan(dir: &Path, now: OffsetDateTime, limit: usize) -> Result<Scan, StoreError> {
    let mut candidates = Vec::new();
    let stale_before = SystemTime::now().checked_sub(STALE_TEMP);
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                tracing::warn!(store = "file", error = %err, "cannot read a session directory entry");
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `DirEntry::file_type` does not follow symlinks.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_file() {
            continue;
        }
        if let Some(key) = record_key(name) {
            match read_record(&entry.path(), limit) {
                Ok(Some(record)) if record.expires <= now => candidates.push(key),
                Ok(_) => {}
                Err(StoreError::Corrupt(_)) => candidates.push(key),
                Err(err) => {
                    tracing::warn!(store = "file", key = %key.short(), error = %err, "cannot read a session record");
                }
            }
        } else if is_temp_name(name) {
            let modified = entry.metadata().and_then(|meta| meta.modified());
            let stale = match (modified, stale_before) {
                (Ok(modified), Some(before)) => modified < before,
                _ => false,
            };
            if stale {
                if let Err(err) = remove(&entry.path()) {
                    tracing::warn!(store = "file", error = %err, "cannot remove a stale temporary session file");
                }
            }
        }
    }
    Ok(Scan { candidates })
}

/// Reads every record file in `dir` and answers those of `owner` that
/// expire after `now`. Records that cannot be read are skipped (with a
/// warning for errors other than corruption, which `delete_expired` deals
/// with); other files are never opened.
fn owned(dir: &Path, owner: &str, now: OffsetDateTime, limit: usize) -> Result<Vec<OwnedRecord>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(record_key) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match read_record(&entry.path(), limit) {
            Ok(Some(record)) if record.expires > now && record.owner() == Some(owner) => {
                found.push(OwnedRecord::new(key, &record));
            }
            Ok(_) | Err(StoreError::Corrupt(_)) => {}
            Err(err) => {
                tracing::warn!(store = "file", key = %key.short(), error = %err, "cannot read a session record");
            }
        }
    }
    Ok(found)
}

/// Re-checks one candidate under its lock and removes it if it is still
/// expired or corrupt. Answers whether it removed a record.
fn reap_one(dir: &Path, key: &StoreKey, now: OffsetDateTime, limit: usize) -> Result<bool, StoreError> {
    let path = record_path(dir, key)?;
    match read_record(&path, limit) {
        Ok(Some(record)) if record.expires <= now => {
            remove(&path)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(StoreError::Corrupt(reason)) => {
            // Only regular files are candidates; a directory or link under a
            // record's name stays (and keeps loading as corrupt).
            let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
            if !is_file {
                return Ok(false);
            }
            tracing::warn!(store = "file", key = %key.short(), reason = %reason, "removing a corrupt session record");
            remove(&path)?;
            Ok(true)
        }
        Err(err) => Err(err),
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        // No lock: records are replaced by rename, so a read sees either the
        // old file or the new one.
        let key = key.clone();
        let limit = self.max_record_bytes;
        self.blocking(move |dir| read_record(&record_path(dir, &key)?, limit))
            .await
    }

    async fn save(&self, key: &StoreKey, change: &Change) -> Result<SaveOutcome, StoreError> {
        let guard = self.lock(key).await;
        let key = key.clone();
        let change = change.clone();
        let limit = self.max_record_bytes;
        self.blocking(move |dir| {
            let _guard = guard;
            let path = record_path(dir, &key)?;
            let record = match change.kind {
                SaveKind::Create => {
                    match fs::symlink_metadata(&path) {
                        Ok(_) => return Err(StoreError::Conflict),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err.into()),
                    }
                    change.to_record()
                }
                SaveKind::Update => match read_record(&path, limit)? {
                    Some(mut record) => {
                        change.apply(&mut record);
                        record
                    }
                    None => return Ok(SaveOutcome::Missing),
                },
            };
            let bytes = encode(&record, limit)?;
            write_atomic(dir, &key, &bytes)?;
            Ok(SaveOutcome::Saved)
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let guard = self.lock(key).await;
        let key = key.clone();
        self.blocking(move |dir| {
            let _guard = guard;
            remove(&record_path(dir, &key)?)?;
            // A logout that answered survives a crash.
            sync_dir(dir);
            Ok(())
        })
        .await
    }

    /// Holds the locks of both keys (taken in stripe order), checks that
    /// nothing is filed under `to`, reads `from`, writes the merged record
    /// over `from` atomically and renames it to `to`. A `from` that is not a
    /// valid record is [`StoreError::Corrupt`] and nothing moves.
    async fn cycle(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        change: &Change,
    ) -> Result<SaveOutcome, StoreError> {
        let guards = self.lock_two(from, to).await;
        let (from, to) = (from.clone(), to.clone());
        let change = change.clone();
        let limit = self.max_record_bytes;
        self.blocking(move |dir| {
            let _guards = guards;
            cycle_files(dir, &from, &to, &change, limit)
        })
        .await
    }

    /// Under the key's lock: reads the record, and if it holds such keys,
    /// writes it back without them (temporary file, `fsync`, rename).
    async fn take_prefixed(&self, key: &StoreKey, prefix: &str) -> Result<Data, StoreError> {
        let guard = self.lock(key).await;
        let key = key.clone();
        let prefix = prefix.to_owned();
        let limit = self.max_record_bytes;
        self.blocking(move |dir| {
            let _guard = guard;
            let Some(mut record) = read_record(&record_path(dir, &key)?, limit)? else {
                return Ok(Data::new());
            };
            let taken = record.take_prefixed(&prefix);
            if !taken.is_empty() {
                write_atomic(dir, &key, &encode(&record, limit)?)?;
            }
            Ok(taken)
        })
        .await
    }

    /// Removes expired records, and also corrupt record files (with a
    /// warning naming the 12-digit key prefix) and temporary files left over
    /// for more than an hour by a crash. Files whose name is not a record's
    /// or a temporary file's are never touched. The count includes the
    /// corrupt records removed.
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let limit = self.max_record_bytes;
        let scan = self.blocking(move |dir| scan(dir, now, limit)).await?;
        let mut removed = 0;
        for key in scan.candidates {
            let guard = self.lock(&key).await;
            let short = key.short().to_owned();
            let result = self
                .blocking(move |dir| {
                    let _guard = guard;
                    reap_one(dir, &key, now, limit)
                })
                .await;
            match result {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(store = "file", key = %short, error = %err, "cannot remove an expired session record");
                }
            }
        }
        Ok(removed)
    }

    /// Reads every record file (see [the type's docs](FileStore)).
    async fn list_owned(&self, owner: &str, now: OffsetDateTime) -> Result<Vec<OwnedRecord>, StoreError> {
        let owner = owner.to_owned();
        let limit = self.max_record_bytes;
        self.blocking(move |dir| owned(dir, &owner, now, limit)).await
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use serde_json::json;
    use time::Duration;

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2030-01-01 0:00 UTC)
    }

    fn create_change(data: crate::record::Data, expires: OffsetDateTime) -> Change {
        Change {
            kind: SaveKind::Create,
            set: data,
            removed: Vec::new(),
            created: t0(),
            accessed: t0(),
            expires,
        }
    }

    fn record_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[cfg(feature = "conformance")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_owned();
        let mut n = 0;
        crate::store::conformance::run(|| {
            n += 1;
            let dir = base.join(format!("store-{n}"));
            async move { FileStore::new(dir).expect("new store") }
        })
        .await;
    }

    #[cfg(feature = "conformance")]
    #[tokio::test]
    async fn conformance_on_current_thread_runtime() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_owned();
        let mut n = 0;
        crate::store::conformance::run(|| {
            n += 1;
            let dir = base.join(format!("store-{n}"));
            async move { FileStore::new(dir).expect("new store") }
        })
        .await;
    }

    #[tokio::test]
    async fn new_creates_nested_dir_and_is_clone_debug_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a").join("b");
        let store = FileStore::new(&dir).expect("new");
        assert!(dir.is_dir());
        assert_eq!(store.name(), "file");
        assert_eq!(store.dir(), dir);
        let clone = store.clone();
        let key = SessionId::generate().store_key();
        store
            .save(&key, &create_change(Default::default(), t0()))
            .await
            .expect("save");
        assert!(
            clone.load(&key).await.expect("load").is_some(),
            "clones share the dir"
        );
        let debug = format!("{store:?}");
        assert!(
            debug.contains("FileStore") && debug.contains("max_record_bytes"),
            "{debug}"
        );
    }

    #[test]
    fn new_over_a_file_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("not-a-dir");
        fs::write(&path, b"x").expect("write");
        assert!(matches!(FileStore::new(&path), Err(StoreError::Io(_))));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_0600_and_dir_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("sessions");
        let store = FileStore::new(&dir).expect("new");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let key = SessionId::generate().store_key();
        store
            .save(&key, &create_change(Default::default(), t0()))
            .await
            .expect("create");
        let path = dir.join(format!("{}.json", key.as_str()));
        assert_eq!(mode(&path), 0o600);
        let mut set = crate::record::Data::new();
        set.insert("a".into(), json!(1));
        let update = Change {
            kind: SaveKind::Update,
            set,
            ..create_change(Default::default(), t0())
        };
        assert_eq!(
            store.save(&key, &update).await.expect("update"),
            SaveOutcome::Saved
        );
        assert_eq!(mode(&path), 0o600, "an update keeps 0600");
    }

    #[tokio::test]
    async fn record_file_is_named_by_store_key_and_holds_json() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new");
        let id = SessionId::generate();
        let key = id.store_key();
        let mut data = crate::record::Data::new();
        data.insert("user".into(), json!("ada"));
        let change = create_change(data, t0() + Duration::days(1));
        store.save(&key, &change).await.expect("create");
        assert_eq!(record_files(tmp.path()), [format!("{}.json", key.as_str())]);
        let text = fs::read_to_string(tmp.path().join(format!("{}.json", key.as_str()))).expect("read");
        assert!(
            !text.contains(&id.expose()),
            "the session id never reaches the disk"
        );
        let record: Record = serde_json::from_str(&text).expect("a Record");
        assert_eq!(record, change.to_record());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_temp_files_left_after_saves() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new");
        let key = SessionId::generate().store_key();
        store
            .save(&key, &create_change(Default::default(), t0()))
            .await
            .expect("create");
        let mut handles = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            let key = key.clone();
            handles.push(tokio::spawn(async move {
                let mut set = crate::record::Data::new();
                set.insert(format!("k{i}"), json!(i));
                let change = Change {
                    kind: SaveKind::Update,
                    set,
                    ..create_change(Default::default(), t0())
                };
                store.save(&key, &change).await
            }));
        }
        for handle in handles {
            assert_eq!(handle.await.expect("join").expect("save"), SaveOutcome::Saved);
        }
        let record = store.load(&key).await.expect("load").expect("present");
        assert_eq!(record.data.len(), 20, "spawned overlapping updates keep all keys");
        // A failed save (too large) leaves no temp file either.
        let small = store.clone().max_record_bytes(10);
        let mut set = crate::record::Data::new();
        set.insert("big".into(), json!("x".repeat(100)));
        let change = Change {
            kind: SaveKind::Update,
            set,
            ..create_change(Default::default(), t0())
        };
        assert!(small.save(&key, &change).await.is_err());
        assert_eq!(record_files(tmp.path()), [format!("{}.json", key.as_str())]);
    }

    #[tokio::test]
    async fn corrupt_files_load_as_corrupt_and_are_reaped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new");
        let contents: [&[u8]; 5] = [
            b"not json",
            b"",
            b"{\"data\": {}}",
            b"[1, 2, 3]",
            &[0xff, 0xfe, 0x00, 0x01],
        ];
        let mut keys = Vec::new();
        for bytes in contents {
            let key = SessionId::generate().store_key();
            fs::write(tmp.path().join(format!("{}.json", key.as_str())), bytes).expect("write");
            match store.load(&key).await {
                Err(StoreError::Corrupt(reason)) => assert!(!reason.is_empty()),
                other => panic!("{:?} loaded as {other:?}", String::from_utf8_lossy(bytes)),
            }
            // An update cannot merge into a corrupt record; a create conflicts.
            let update = Change {
                kind: SaveKind::Update,
                ..create_change(Default::default(), t0())
            };
            assert!(matches!(
                store.save(&key, &update).await,
                Err(StoreError::Corrupt(_))
            ));
            assert!(matches!(
                store.save(&key, &create_change(Default::default(), t0())).await,
                Err(StoreError::Conflict)
            ));
            keys.push(key);
        }
        // A live record stays.
        let live = SessionId::generate().store_key();
        store
            .save(
                &live,
                &create_change(Default::default(), t0() + Duration::days(1)),
            )
            .await
            .expect("create");
        let removed = store.delete_expired(t0()).await.expect("delete_expired");
        assert_eq!(removed, keys.len() as u64, "corrupt records count as removed");
        for key in &keys {
            assert!(store.load(key).await.expect("load").is_none());
        }
        assert!(store.load(&live).await.expect("load").is_some());
        // Deleting a corrupt record works too.
        let key = SessionId::generate().store_key();
        fs::write(tmp.path().join(format!("{}.json", key.as_str())), b"junk").expect("write");
        store.delete(&key).await.expect("delete");
        assert!(store.load(&key).await.expect("load").is_none());
    }

    #[tokio::test]
    async fn oversized_save_is_too_large_and_oversized_file_is_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new").max_record_bytes(1024);
        let key = SessionId::generate().store_key();
        let mut set = crate::record::Data::new();
        set.insert("big".into(), json!("x".repeat(2000)));
        match store.save(&key, &create_change(set.clone(), t0())).await {
            Err(StoreError::TooLarge { size, limit }) => {
                assert_eq!(limit, 1024);
                assert!(size > 2000);
            }
            other => panic!("oversized create answered {other:?}"),
        }
        assert!(store.load(&key).await.expect("load").is_none(), "nothing written");

        // An update that would grow the record past the limit leaves it as it was.
        store
            .save(&key, &create_change(Default::default(), t0()))
            .await
            .expect("small create");
        let update = Change {
            kind: SaveKind::Update,
            set,
            ..create_change(Default::default(), t0())
        };
        assert!(matches!(
            store.save(&key, &update).await,
            Err(StoreError::TooLarge { .. })
        ));
        let record = store.load(&key).await.expect("load").expect("present");
        assert!(record.data.is_empty());

        // A record written under a larger limit reads as corrupt under a smaller one.
        let big = FileStore::new(tmp.path()).expect("new");
        let key = SessionId::generate().store_key();
        let mut set = crate::record::Data::new();
        set.insert("big".into(), json!("x".repeat(2000)));
        big.save(&key, &create_change(set, t0() + Duration::days(1)))
            .await
            .expect("create under the default limit");
        assert!(matches!(store.load(&key).await, Err(StoreError::Corrupt(_))));
        assert!(big.load(&key).await.expect("load").is_some());
    }

    #[tokio::test]
    async fn path_safety() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("sessions");
        let store = FileStore::new(&dir).expect("new");
        for _ in 0..20 {
            let key = SessionId::generate().store_key();
            let path = record_path(&dir, &key).expect("path");
            assert_eq!(path.parent(), Some(dir.as_path()));
            store
                .save(&key, &create_change(Default::default(), t0()))
                .await
                .expect("create");
            assert!(path.is_file());
        }
        assert_eq!(
            record_files(tmp.path()),
            ["sessions"],
            "nothing lands outside the dir"
        );
        let good = "a".repeat(64);
        for bad in [
            "../..".to_owned(),
            format!("../{}", &good[3..]),
            format!("/{}", &good[1..]),
            good.to_uppercase(),
            good[1..].to_owned(),
            format!("{good}0"),
            format!("{}.", &good[1..]),
            format!("{}\0", &good[1..]),
            String::new(),
        ] {
            assert!(StoreKey::parse(&bad).is_none(), "{bad:?} must not parse");
            assert!(record_key(&format!("{bad}.json")).is_none());
        }
        assert!(record_key(&format!("{good}.json")).is_some());
        assert!(record_key(&good).is_none());
        assert!(record_key(&format!("{good}.json.bak")).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_dir_must_be_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        for (mode, safe) in [
            (0o700, true),
            (0o755, true),
            (0o750, true),
            (0o500, true),
            (0o770, false),
            (0o720, false),
            (0o702, false),
            (0o777, false),
            (0o1777, false),
        ] {
            let dir = tmp.path().join(format!("d{mode:o}"));
            fs::create_dir(&dir).expect("mkdir");
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
            match FileStore::new(&dir) {
                Ok(_) => assert!(safe, "{mode:o} must be refused"),
                Err(StoreError::UnsafeDirectory { path, problem }) => {
                    assert!(!safe, "{mode:o} must be accepted");
                    assert_eq!(path, dir);
                    assert!(problem.contains("writable"), "{problem}");
                }
                Err(other) => panic!("{mode:o}: {other}"),
            }
            // The store never changes an existing directory's mode.
            let now = fs::metadata(&dir).expect("meta").permissions().mode() & 0o7777;
            assert_eq!(now, mode);
        }
        // Owned by another user: as root, give a directory away; otherwise
        // `/` is one (and is not writable by group or others).
        let theirs = if rustix::process::geteuid().is_root() {
            let dir = tmp.path().join("theirs");
            fs::create_dir(&dir).expect("mkdir");
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
            dir
        } else {
            PathBuf::from("/")
        };
        match FileStore::new(&theirs) {
            Err(StoreError::UnsafeDirectory { problem, .. }) => {
                assert!(problem.contains("another user"), "{problem}");
            }
            other => panic!("another user's directory: {other:?}"),
        }
        // A directory the store creates itself is private.
        FileStore::new(tmp.path().join("new/nested")).expect("new");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_fifo_under_a_records_name_is_corrupt_and_does_not_hang() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new");
        let key = SessionId::generate().store_key();
        let path = tmp.path().join(format!("{}.json", key.as_str()));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .expect("mkfifo");
        let load = tokio::time::timeout(std::time::Duration::from_secs(10), store.load(&key));
        assert!(matches!(
            load.await.expect("a FIFO must not block the load"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_are_never_followed() {
        {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join("sessions");
            let store = FileStore::new(&dir).expect("new");
            let outside = tmp.path().join("outside.json");
            let record = create_change(Default::default(), t0()).to_record();
            fs::write(&outside, serde_json::to_vec(&record).expect("json")).expect("write");
            let key = SessionId::generate().store_key();
            let link = dir.join(format!("{}.json", key.as_str()));
            std::os::unix::fs::symlink(&outside, &link).expect("symlink");
            assert!(matches!(store.load(&key).await, Err(StoreError::Corrupt(_))));
            // Not a regular file: delete_expired leaves it; the target is untouched.
            assert_eq!(
                store
                    .delete_expired(t0() + Duration::days(9))
                    .await
                    .expect("reap"),
                0
            );
            assert!(outside.is_file());
            // An explicit delete removes the link, not the target.
            store.delete(&key).await.expect("delete");
            assert!(fs::symlink_metadata(&link).is_err());
            assert!(outside.is_file());
        }
    }

    #[tokio::test]
    async fn delete_expired_leaves_foreign_files_and_removes_stale_temps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path()).expect("new");
        let key = SessionId::generate().store_key();
        let expired = create_change(Default::default(), t0());
        store.save(&key, &expired).await.expect("create");
        let good = key.as_str().to_owned();
        let foreign = [
            "README".to_owned(),
            "notes.json".to_owned(),
            format!("{}.json", good.to_uppercase()),
            format!("{good}.json.bak"),
            format!("{good}.txt"),
            format!(".{good}.tmp"),
            format!(".{good}.nothex-nothex-nothex-nothex-12.tmp"),
        ];
        for name in &foreign {
            fs::write(tmp.path().join(name), b"not a record").expect("write");
        }
        fs::create_dir(tmp.path().join(format!("{}.json", "b".repeat(64)))).expect("mkdir");
        // A temp file that is fresh stays; one older than an hour goes.
        let fresh = format!(".{good}.{}.tmp", "0".repeat(32));
        let stale = format!(".{good}.{}.tmp", "1".repeat(32));
        fs::write(tmp.path().join(&fresh), b"partial").expect("write");
        let stale_file = fs::File::create(tmp.path().join(&stale)).expect("create");
        stale_file
            .set_modified(SystemTime::now() - std::time::Duration::from_secs(2 * 60 * 60))
            .expect("set mtime");
        drop(stale_file);

        let removed = store
            .delete_expired(t0() + Duration::seconds(1))
            .await
            .expect("reap");
        assert_eq!(removed, 1);
        let mut want: Vec<String> = foreign.to_vec();
        want.push(fresh);
        want.push(format!("{}.json", "b".repeat(64)));
        want.sort();
        assert_eq!(record_files(tmp.path()), want);
        for name in &foreign {
            assert_eq!(fs::read(tmp.path().join(name)).expect("read"), b"not a record");
        }
    }

    #[test]
    fn reaping_rechecks_what_the_scan_found() {
        // A record the scan found expired but that a save refreshed before
        // the reaper took its lock stays.
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = SessionId::generate().store_key();
        let limit = FileStore::DEFAULT_MAX_RECORD_BYTES;
        let expired = create_change(Default::default(), t0()).to_record();
        write_atomic(tmp.path(), &key, &encode(&expired, limit).expect("encode")).expect("write");
        let now = t0() + Duration::seconds(1);
        let found = scan(tmp.path(), now, limit).expect("scan").candidates;
        assert_eq!(found, std::slice::from_ref(&key));
        let refreshed = Record {
            expires: t0() + Duration::days(1),
            ..expired
        };
        write_atomic(tmp.path(), &key, &encode(&refreshed, limit).expect("encode")).expect("write");
        assert!(!reap_one(tmp.path(), &key, now, limit).expect("reap"));
        let path = record_path(tmp.path(), &key).expect("path");
        assert_eq!(read_record(&path, limit).expect("read"), Some(refreshed));
        // Gone meanwhile: nothing to do, no error.
        fs::remove_file(&path).expect("remove");
        assert!(!reap_one(tmp.path(), &key, now, limit).expect("reap"));
    }

    #[test]
    fn stripes_cover_the_key_space() {
        assert_eq!(stripe(&"0".repeat(64)), 0);
        assert_eq!(stripe(&"f".repeat(64)), 255);
        assert_eq!(stripe(&format!("a5{}", "0".repeat(62))), 0xa5);
        assert!(is_temp_name(&format!(
            ".{}.{}.tmp",
            "a".repeat(64),
            "0".repeat(32)
        )));
        assert!(!is_temp_name(&format!(
            ".{}.{}.tmp",
            "a".repeat(64),
            "0".repeat(31)
        )));
        assert!(!is_temp_name(&format!(
            "{}.{}.tmp",
            "a".repeat(64),
            "0".repeat(32)
        )));
    }
}
