//! [`Error`] and [`Result`]: the one error type of the library.
//!
//! Each variant is something a caller handles differently. Driver errors (SQLite, I/O) are turned
//! into [`Error::Backend`] or [`Error::Io`] at the backend boundary, so no driver type appears in a
//! public signature.

use crate::record::{Expect, Version};

mod kind;

pub use kind::ErrorKind;

/// The result type of every fallible Strongbox call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from a lower layer, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in Strongbox.
///
/// A missing key is not an error: reads return `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A collection name or key broke a documented limit (see [`crate::name`]); fix the name.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `"collection"` or `"key"`.
        what: &'static str,
        /// The offending name, shortened to at most 64 bytes for display.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A serialized value is larger than `Config::max_value_bytes`; store it in parts or raise the limit.
    #[error(
        "value for {collection}/{key} is {size} bytes, over the limit of {max} bytes (raise max_value_bytes or split the value)"
    )]
    ValueTooLarge {
        /// Collection of the rejected write.
        collection: String,
        /// Key of the rejected write.
        key: String,
        /// Serialized size of the value, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        max: usize,
    },

    /// A conditional write found another version than it expected; re-read and retry.
    #[error("conflict on {collection}/{key}: expected {expected}, found {}", display_version(*actual))]
    Conflict {
        /// Collection of the conflicting write.
        collection: String,
        /// Key of the conflicting write.
        key: String,
        /// What the write required.
        expected: Expect,
        /// The version found in the database (`None`: the key does not exist).
        actual: Option<Version>,
    },

    /// Stored data failed verification: a hash mismatch, an undecodable blob or a broken reference.
    /// The value is never returned; restore the affected key from a backup.
    #[error("corrupt data{}: {detail}", display_location(collection.as_deref(), key.as_deref()))]
    Corrupt {
        /// Collection of the affected record, when known.
        collection: Option<String>,
        /// Key of the affected record, when known.
        key: Option<String>,
        /// What was found.
        detail: String,
    },

    /// The database stayed locked by another connection or process for longer than
    /// `Config::busy_timeout_ms`, or no connection became free in that time; retry later.
    #[error(
        "database busy: gave up after waiting {waited_ms} ms (raise busy_timeout_ms or reduce contention)"
    )]
    Busy {
        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },

    /// The database server cannot be reached, or stopped answering during the call: it crashed,
    /// is shutting down or restarting, or is a standby that cannot write (a failover is under
    /// way). Retryable ([`Error::is_retryable`]): with a multi-host PostgreSQL URL and
    /// `target_session_attrs=read-write`, the next connection goes to the new primary.
    ///
    /// **The outcome of a write that fails with it is unknown** when the connection broke
    /// during its commit: it may have committed. Read the key's version (`Store::version`) to
    /// learn which before retrying a write that must not apply twice, or retry it
    /// conditionally (`Expect::Version`).
    #[error(
        "database unavailable: cannot {action} (the server is down, restarting or failing over: retry; a write's outcome is unknown, check its version)"
    )]
    Unavailable {
        /// What was being done, as an action.
        action: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A value could not be serialized (a NaN or infinite float, which could not be read back
    /// as it was; a map with non-string keys), or the stored value does not match the requested
    /// type.
    #[error("cannot {action} value of {collection}/{key}")]
    Serialization {
        /// `"serialize"` or `"deserialize"`.
        action: &'static str,
        /// Collection of the value.
        collection: String,
        /// Key of the value.
        key: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },

    /// The configuration is invalid; the message names the field.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The database engine failed (disk full, read-only file, unreadable database...).
    #[error("storage backend failed to {action}")]
    Backend {
        /// What was being done, as an action.
        action: String,
        /// The engine's error.
        #[source]
        source: BoxError,
    },

    /// The disk (or the file size limit) is full; nothing of the failed call was written. Free
    /// space, then retry: what was acknowledged before is intact.
    #[error("storage is full: cannot {action} (free disk space, then retry)")]
    StorageFull {
        /// What was being done, as an action.
        action: String,
    },

    /// A file operation outside the database engine failed.
    #[error("cannot {action}")]
    Io {
        /// What was being done, as an action, naming the file.
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The store was opened read-only (`Config::read_only`) and the call would write.
    #[error("the store is read-only: cannot {action} (open it without read_only to write)")]
    ReadOnly {
        /// What was refused, as an action.
        action: String,
    },

    /// The store was closed; open it again.
    #[error("the store is closed")]
    Closed,

    /// The change feed no longer holds changes after `requested`: they were trimmed
    /// (`Config::changes_retention_secs`, `Config::changes_retention_count`). Read again from
    /// `oldest - 1`, having reconciled what the trimmed changes would have told.
    #[error(
        "the changes after {requested} were trimmed from the change feed; the oldest still held is {oldest} (resume from a newer sequence, or keep changes longer with changes_retention_secs and changes_retention_count)"
    )]
    ChangesTrimmed {
        /// The sequence number asked to resume after.
        requested: u64,
        /// The oldest sequence number still held (the next one to be written, when the feed
        /// is empty).
        oldest: u64,
    },

    /// A [`crate::blocking`] call was made inside a tokio runtime, where waiting would stall
    /// the runtime's thread; nothing was done. Call the async [`crate::Store`] there instead.
    #[error(
        "cannot {action} with strongbox::blocking inside a tokio runtime (use the async strongbox::Store there)"
    )]
    BlockingInAsync {
        /// What was refused, as an action.
        action: &'static str,
    },

    /// A backup repository's lock stayed held by another process (a prune, or backups and
    /// restores while a prune waits) for longer than the repository's lock timeout
    /// (`Repository::with_lock_timeout`); nothing was done. Retry later, or wait longer.
    #[error(
        "the backup repository {repository} stayed locked by another process (held by {holder}) for {waited_ms} ms; retry when it is done, or wait longer (a longer lock timeout)"
    )]
    LockTimeout {
        /// The repository's directory.
        repository: String,
        /// Who holds the lock, as far as is known (`"a running prune"`...).
        holder: String,
        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },
    /// A backup repository cannot be opened with the key given: it is encrypted and no key
    /// was given, the passphrase or key file is not its own, or a key was given for a
    /// repository that is not encrypted. Nothing was read or written; the message says what
    /// to give.
    #[error("cannot open the backup repository {repository}: {problem}")]
    RepositoryKey {
        /// The repository directory.
        repository: String,
        /// What is wrong with the key.
        problem: KeyProblem,
    },
}

/// What is wrong with the key given for a backup repository ([`Error::RepositoryKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The repository is encrypted and no key was given.
    #[error("it is encrypted; give its passphrase or key file (Repository::open_with_key)")]
    Missing,
    /// The passphrase or key file given does not open the repository.
    #[error("the passphrase or key file given is not this repository's (check it and retry)")]
    Wrong,
    /// A passphrase was given for a repository encrypted with a key file, or the reverse.
    #[error("it is encrypted with a {needs}; give its {needs}")]
    OtherKind {
        /// What the repository needs: `"passphrase"` or `"key file"`.
        needs: &'static str,
    },
    /// A key was given for a repository that is not encrypted.
    #[error("it is not encrypted; open it without a key")]
    NotEncrypted,
}

fn display_version(version: Option<Version>) -> String {
    match version {
        Some(version) => format!("version {}", version.get()),
        None => "no record".to_owned(),
    }
}

fn display_location(collection: Option<&str>, key: Option<&str>) -> String {
    match (collection, key) {
        (Some(collection), Some(key)) => format!(" in {collection}/{key}"),
        (Some(collection), None) => format!(" in collection {collection}"),
        _ => String::new(),
    }
}

impl Error {
    /// Wraps an engine error with the action that failed.
    pub(crate) fn backend(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            action: action.into(),
            source: source.into(),
        }
    }

    /// A corruption found at a known record.
    pub(crate) fn corrupt_at(collection: &str, key: &str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            collection: Some(collection.to_owned()),
            key: Some(key.to_owned()),
            detail: detail.into(),
        }
    }

    /// A copy of this error for each of several callers that share one failure (a group commit).
    /// The source is kept as its message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Busy { waited_ms } => Error::Busy {
                waited_ms: *waited_ms,
            },
            Error::Closed => Error::Closed,
            Error::ReadOnly { action } => Error::ReadOnly {
                action: action.clone(),
            },
            Error::StorageFull { action } => Error::StorageFull {
                action: action.clone(),
            },
            // A damaged file stays a damaged file for every caller that shared the failure.
            Error::Corrupt {
                collection,
                key,
                detail,
            } => Error::Corrupt {
                collection: collection.clone(),
                key: key.clone(),
                detail: detail.clone(),
            },
            Error::Backend { action, source } => Error::Backend {
                action: action.clone(),
                source: source.to_string().into(),
            },
            Error::Unavailable { action, source } => Error::Unavailable {
                action: action.clone(),
                source: source.to_string().into(),
            },
            other => Error::backend("complete a shared operation", other.to_string()),
        }
    }

    /// Whether the same call may succeed if simply made again later: [`Error::Busy`],
    /// [`Error::Unavailable`] and [`Error::LockTimeout`]. (A [`Error::Conflict`] needs a fresh read first.) A write that
    /// failed with `Unavailable` may have committed: see there.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Busy { .. } | Error::Unavailable { .. } | Error::LockTimeout { .. }
        )
    }

    /// Fills in how long a busy call waited, which the engine's error does not say.
    pub(crate) fn busy_after(self, waited: std::time::Duration) -> Self {
        match self {
            Error::Busy { .. } => Error::Busy {
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            },
            other => other,
        }
    }

    /// Names the database (file path or redacted URL) in an engine error that happened while
    /// opening it.
    pub(crate) fn in_location(self, location: &str) -> Self {
        match self {
            Error::Backend { action, source } if !action.contains(location) => Error::Backend {
                action: format!("{action} (database {location})"),
                source,
            },
            Error::Unavailable { action, source } if !action.contains(location) => {
                Error::Unavailable {
                    action: format!("{action} (database {location})"),
                    source,
                }
            }
            Error::Corrupt {
                collection: None,
                key: None,
                detail,
            } if !detail.contains(location) => Error::Corrupt {
                collection: None,
                key: None,
                detail: format!("{detail} (database {location})"),
            },
            other => other,
        }
    }

    /// What kind of error this is: one [`ErrorKind`] per variant, for matching without the
    /// fields, metrics labels ([`ErrorKind::as_str`]) and exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. } => ErrorKind::InvalidName,
            Error::ValueTooLarge { .. } => ErrorKind::ValueTooLarge,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Serialization { .. } => ErrorKind::Serialization,
            Error::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::StorageFull { .. } => ErrorKind::StorageFull,
            Error::Io { .. } => ErrorKind::Io,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::Closed => ErrorKind::Closed,
            Error::BlockingInAsync { .. } => ErrorKind::BlockingInAsync,
            Error::ChangesTrimmed { .. } => ErrorKind::ChangesTrimmed,
            Error::LockTimeout { .. } => ErrorKind::LockTimeout,
            Error::RepositoryKey { .. } => ErrorKind::RepositoryKey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_failure_keeps_its_kind_for_every_caller() {
        let corrupt = Error::Corrupt {
            collection: None,
            key: None,
            detail: "database disk image is malformed".into(),
        };
        assert_eq!(corrupt.duplicate().kind(), ErrorKind::Corrupt);
        assert_eq!(
            Error::Busy { waited_ms: 5 }.duplicate().kind(),
            ErrorKind::Busy
        );
        let unavailable = Error::Unavailable {
            action: "commit a write transaction".into(),
            source: "connection closed".into(),
        };
        assert!(unavailable.is_retryable());
        assert!(unavailable.duplicate().is_retryable());
        assert_eq!(unavailable.duplicate().kind(), ErrorKind::Unavailable);
        assert!(!Error::Closed.is_retryable());
    }

    #[test]
    fn every_kind_has_its_place_and_a_distinct_name() {
        let mut names = std::collections::BTreeSet::new();
        for (index, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index, "{kind:?}");
            assert_eq!(kind.to_string(), kind.as_str());
            assert!(names.insert(kind.as_str()), "{kind} twice");
        }
        assert_eq!(Error::Closed.kind().as_str(), "closed");
        assert_eq!(
            Error::ReadOnly {
                action: "write".into()
            }
            .kind()
            .as_str(),
            "read_only"
        );
    }
}
