//! Conversions at the PostgreSQL boundary: driver errors into [`Error`], signed integers into
//! counts, and metadata columns into [`RecordMeta`].

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::error::Error;
use crate::record::{RecordMeta, Version};

/// PostgreSQL integers are signed; counts and versions never reach 2^63.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative count from a signed column.
pub(super) fn unsigned(value: i64) -> u64 {
    value.max(0).unsigned_abs()
}

/// Turns a driver error into a Strongbox error, naming the action that failed.
pub(super) fn map_err(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let action = action.into();
    move |error| match error.code() {
        Some(code) if *code == SqlState::DISK_FULL => Error::StorageFull { action },
        Some(code)
            if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED =>
        {
            Error::Busy { waited_ms: 0 }
        }
        _ => Error::backend(action, error),
    }
}

/// The metadata in six columns from `first` on, in this order: `version, created_at,
/// updated_at, size, access_count, last_accessed` (the order of `strongbox_records`).
pub(super) fn meta(row: &Row, first: usize) -> RecordMeta {
    RecordMeta {
        version: Version::new(unsigned(row.get(first))),
        created_at_ms: row.get(first + 1),
        updated_at_ms: row.get(first + 2),
        size_bytes: unsigned(row.get(first + 3)),
        access_count: unsigned(row.get(first + 4)),
        last_accessed_ms: row.get(first + 5),
    }
}

/// A format tag column (`SMALLINT`); one out of range, which only damage makes, reads as 255,
/// which no codec knows.
pub(super) fn format(row: &Row, index: usize) -> u8 {
    u8::try_from(row.get::<_, i16>(index)).unwrap_or(u8::MAX)
}
