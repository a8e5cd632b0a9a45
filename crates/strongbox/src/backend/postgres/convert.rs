//! Conversions at the PostgreSQL boundary: driver errors into [`Error`], columns into values
//! ([`Column`]), signed integers into counts, and metadata columns into [`RecordMeta`].
//!
//! **Invariant:** no row is read with the driver's panicking `Row::get`: a table altered by hand
//! (a column retyped, or made nullable and holding a null) is an `Error`, never a panic.

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version};

/// Reading a column of a result row, as a typed error instead of a panic.
pub(super) trait Column {
    /// The value of column `index` (0-based, in the query's select list).
    ///
    /// # Errors
    /// `Error::Backend` naming the column, when its value does not convert to `T`: the column
    /// no longer has the type (or the `NOT NULL`) Strongbox gave it, so the table was altered
    /// outside Strongbox. The whole table is then unreadable as Strongbox's, not one record
    /// damaged, so this is not `Error::Corrupt`.
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T>;
}

impl Column for Row {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T> {
        self.try_get(index).map_err(|error| {
            let name = self
                .columns()
                .get(index)
                .map_or("?", tokio_postgres::Column::name);
            Error::backend(
                format!(
                    "read column {index} (`{name}`) as the type Strongbox gave it (was the \
                     table altered by hand? restore the table, or the database from a backup)"
                ),
                error,
            )
        })
    }
}

/// PostgreSQL integers are signed; counts and versions never reach 2^63.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative count from a signed column.
pub(super) fn unsigned(value: i64) -> u64 {
    value.max(0).unsigned_abs()
}

/// Turns a driver error into a Strongbox error, naming the action that failed.
///
/// A lost or refused connection, a server shutting down, and a read-only session (a standby:
/// a store opened `read_only` refuses writes before they reach the server, so only a server
/// that cannot write answers this) are [`Error::Unavailable`]: retryable, the next pooled
/// connection going to whichever server now takes writes.
pub(super) fn map_err(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let action = action.into();
    move |error| match error.code() {
        _ if is_unavailable(&error) => Error::Unavailable {
            action,
            source: error.into(),
        },
        Some(code) if *code == SqlState::DISK_FULL => Error::StorageFull { action },
        Some(code)
            if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED =>
        {
            Error::Busy { waited_ms: 0 }
        }
        _ => Error::backend(action, error),
    }
}

/// Whether a driver error means that the server is gone or cannot write, rather than that the
/// statement failed: the connection closed or broke (an I/O error, a refused connection, no
/// host that allows writes, a timeout), the server is shutting down or restarting (`57P01`,
/// `57P02`, `57P03`), a connection exception (class `08`), or a read-only session (`25006`).
pub(super) fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
                || code.code().starts_with("08")
        }
        // The driver exposes its error kinds only through their messages; a TLS failure (a
        // certificate refused) also carries an I/O error, and is no outage.
        None => {
            let message = error.to_string();
            error.is_closed()
                || message.starts_with("error communicating with the server")
                || message.starts_with("error connecting to server")
                || message.starts_with("timeout waiting for server")
        }
    }
}

/// The metadata in seven columns from `first` on, in this order: `version, created_at,
/// updated_at, size, access_count, last_accessed, expires_at` (the order of
/// `strongbox_records`).
pub(super) fn meta(row: &Row, first: usize) -> Result<RecordMeta> {
    Ok(RecordMeta {
        version: Version::new(unsigned(row.column(first)?)),
        created_at_ms: row.column(first + 1)?,
        updated_at_ms: row.column(first + 2)?,
        size_bytes: unsigned(row.column(first + 3)?),
        access_count: unsigned(row.column(first + 4)?),
        last_accessed_ms: row.column(first + 5)?,
        expires_at_ms: row.column(first + 6)?,
    })
}

/// A format tag column (`SMALLINT`); one out of range, which only damage makes, reads as 255,
/// which no codec knows.
pub(super) fn format(row: &Row, index: usize) -> Result<u8> {
    Ok(u8::try_from(row.column::<i16>(index)?).unwrap_or(u8::MAX))
}
