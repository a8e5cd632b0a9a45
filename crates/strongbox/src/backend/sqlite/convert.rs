//! Conversions at the SQLite boundary: driver errors into [`Error`], SQLite's signed integers
//! into counts, and metadata columns into [`RecordMeta`].

use rusqlite::{ErrorCode, Row};

use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version};

/// Turns a rusqlite error into a Strongbox error, naming the action that failed.
pub(super) fn map_err(action: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let action = action.into();
    move |error| match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy { waited_ms: 0 },
        Some(ErrorCode::DiskFull) => Error::StorageFull { action },
        // A damaged page, or a file that is not a database: the store's data is damaged.
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt {
            collection: None,
            key: None,
            detail: format!("cannot {action}: {error}"),
        },
        _ => Error::backend(action, error),
    }
}

/// SQLite integers are signed; counts and versions never reach 2^63.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count from a signed column (a negative one, which only damage makes, reads as 0).
pub(super) fn unsigned(value: i64) -> u64 {
    value.max(0).unsigned_abs()
}

/// The metadata in seven columns from `first` on, in this order: `version, created_at,
/// updated_at, size, access_count, last_accessed, expires_at` (the order of the `records`
/// table).
pub(super) fn meta(row: &Row<'_>, first: usize) -> rusqlite::Result<RecordMeta> {
    Ok(RecordMeta {
        version: Version::new(unsigned(row.get(first)?)),
        created_at_ms: row.get(first + 1)?,
        updated_at_ms: row.get(first + 2)?,
        size_bytes: unsigned(row.get(first + 3)?),
        access_count: unsigned(row.get(first + 4)?),
        last_accessed_ms: row.get(first + 5)?,
        expires_at_ms: row.get(first + 6)?,
    })
}

/// A blob id column that must hold 32 bytes: anything else is damage.
pub(super) fn blob_id_at(collection: &str, key: &str, bytes: &[u8]) -> Result<crate::blob::BlobId> {
    crate::blob::BlobId::from_slice(bytes)
        .ok_or_else(|| Error::corrupt_at(collection, key, "the record's blob id is not 32 bytes"))
}
