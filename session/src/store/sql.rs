//! Code the SQL stores ([`PostgresStore`](crate::store::PostgresStore) and
//! [`SqliteStore`](crate::store::SqliteStore)) share: identifier checks, error
//! mapping and the decoding of row contents, which never panics.

use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{ConfigError, StoreError};
use crate::id::StoreKey;
use crate::record::{Data, OwnedRecord, Record, SaveOutcome};

/// The table the SQL stores use unless told otherwise.
pub(crate) const DEFAULT_TABLE: &str = "carafe_sessions";

/// How many expired rows one `DELETE` removes at most.
pub(crate) const DEFAULT_DELETE_BATCH: u32 = 1000;

/// The longest table or schema name accepted, so that the derived index name
/// stays within PostgreSQL's 63-byte identifier limit.
pub(crate) const MAX_IDENT_LEN: usize = 48;

/// Checks that `name` is a plain SQL identifier: an ASCII letter or `_`,
/// then ASCII letters, digits or `_`, at most [`MAX_IDENT_LEN`] bytes. Only
/// names that pass this check are ever put into SQL text (and then quoted).
pub(crate) fn check_ident(what: &str, name: &str) -> Result<(), ConfigError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && name.len() <= MAX_IDENT_LEN && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(ConfigError::Store(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_IDENT_LEN} ASCII letters, digits \
             and underscores, not starting with a digit"
        )))
    }
}

/// Quotes an identifier that passed [`check_ident`].
pub(crate) fn quote(name: &str) -> String {
    debug_assert!(check_ident("identifier", name).is_ok());
    format!("\"{name}\"")
}

/// Checks a batch size for `delete_expired`.
pub(crate) fn check_batch(size: u32) -> Result<(), ConfigError> {
    if size == 0 {
        Err(ConfigError::NonPositive {
            option: "delete_batch_size",
        })
    } else {
        Ok(())
    }
}

/// Maps an sqlx error to a store error: a value in a row that does not
/// decode is [`StoreError::Corrupt`], anything else is a backend failure.
pub(crate) fn map_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { index, source } => {
            StoreError::Corrupt(format!("column {index} does not decode: {source}"))
        }
        sqlx::Error::Decode(source) => StoreError::Corrupt(format!("a value does not decode: {source}")),
        other => StoreError::backend(other),
    }
}

/// The answer of a cycle statement (`UPDATE … SET id = to … WHERE id =
/// from`): no row moved is [`SaveOutcome::Missing`]; a unique violation
/// (a row under `to` already) is [`StoreError::Conflict`]; any other
/// failure as [`map_err`] maps it.
pub(crate) fn cycle_outcome(result: Result<u64, sqlx::Error>) -> Result<SaveOutcome, StoreError> {
    match result {
        Ok(0) => Ok(SaveOutcome::Missing),
        Ok(_) => Ok(SaveOutcome::Saved),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(StoreError::Conflict),
        Err(err) => Err(map_err(err)),
    }
}

/// How many times `take_prefixed` reads and compare-and-swaps a row before
/// it gives up: each retry means another request wrote the row's data
/// between the read and the write.
pub(crate) const TAKE_ATTEMPTS: usize = 16;

/// The error of a `take_prefixed` that lost the race [`TAKE_ATTEMPTS`]
/// times in a row (nothing was removed).
pub(crate) fn take_contended() -> StoreError {
    StoreError::Backend(
        format!("the session row changed under every one of {TAKE_ATTEMPTS} attempts to take keys from it")
            .into(),
    )
}

/// A timestamp column read as whole unix seconds (`None` for SQL `NULL`, or
/// for a value the database could not turn into seconds).
pub(crate) fn timestamp(column: &str, secs: Option<i64>) -> Result<OffsetDateTime, StoreError> {
    let secs = secs.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL or not finite")))?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| StoreError::Corrupt(format!("{column} is out of range: {e}")))
}

/// One row of a listing of a user's sessions: its id and its created,
/// accessed and expires seconds. A row that does not decode is left out of
/// the listing with a warning (never its id), not an error for the whole
/// list: `load` reports it as corrupt when its session is used.
pub(crate) fn owned_row(
    store: &'static str,
    id: Result<String, StoreError>,
    [created, accessed, expires]: [Result<Option<i64>, StoreError>; 3],
) -> Option<OwnedRecord> {
    let decoded = (|| {
        let key = StoreKey::parse(&id?).ok_or_else(|| StoreError::Corrupt("id is not a store key".into()))?;
        Ok::<_, StoreError>(OwnedRecord {
            key,
            created: timestamp("created_at", created?)?,
            accessed: timestamp("accessed_at", accessed?)?,
            expires: timestamp("expires_at", expires?)?,
        })
    })();
    match decoded {
        Ok(owned) => Some(owned),
        Err(err) => {
            tracing::warn!(store, error = %err, "a session row in a user's list does not decode; leaving it out");
            None
        }
    }
}

/// The session data from a `data` column: it must be a JSON object.
pub(crate) fn data(value: Option<Value>) -> Result<Data, StoreError> {
    match value {
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(StoreError::Corrupt(format!(
            "data is JSON {}, not an object",
            json_kind(&other)
        ))),
        None => Err(StoreError::Corrupt("data is NULL".into())),
    }
}

/// Builds a record from decoded columns.
pub(crate) fn record(
    data_value: Option<Value>,
    created: Option<i64>,
    accessed: Option<i64>,
    expires: Option<i64>,
) -> Result<Record, StoreError> {
    Ok(Record {
        data: data(data_value)?,
        created: timestamp("created_at", created)?,
        accessed: timestamp("accessed_at", accessed)?,
        expires: timestamp("expires_at", expires)?,
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Refuses a row whose stored size (the `size` the loads select beside the
/// data) is over `limit`: [`StoreError::Corrupt`], with the store's warning,
/// so the runtime starts a fresh session.
pub(crate) fn check_row_size(store: &'static str, size: Option<i64>, limit: usize) -> Result<(), StoreError> {
    match size.and_then(|size| usize::try_from(size).ok()) {
        Some(size) if size > limit => Err(crate::store::oversized_record(store, size, limit)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["carafe_sessions", "_x", "T1", &"a".repeat(MAX_IDENT_LEN)] {
            assert!(check_ident("table", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "a;drop table x",
            "sessions\0",
            "é",
            "public.sessions",
            &"a".repeat(MAX_IDENT_LEN + 1),
        ] {
            assert!(
                matches!(check_ident("table", bad), Err(ConfigError::Store(_))),
                "{bad:?}"
            );
        }
        assert_eq!(quote("abc"), "\"abc\"");
        assert!(check_batch(0).is_err());
        assert!(check_batch(1).is_ok());
    }

    #[test]
    fn row_contents_never_panic() {
        assert!(matches!(data(None), Err(StoreError::Corrupt(_))));
        for v in [
            Value::Null,
            Value::Bool(true),
            1.into(),
            "x".into(),
            Value::Array(vec![]),
        ] {
            assert!(matches!(data(Some(v)), Err(StoreError::Corrupt(_))));
        }
        assert!(data(Some(Value::Object(Data::new()))).is_ok());
        assert!(matches!(timestamp("t", None), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            timestamp("t", Some(i64::MAX)),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            timestamp("t", Some(i64::MIN)),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(timestamp("t", Some(0)).ok(), Some(OffsetDateTime::UNIX_EPOCH));
    }
}
