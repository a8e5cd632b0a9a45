//! [`ErrorKind`]: an [`Error`](super::Error)'s variant without its fields, with stable names.

// The variants' documentation links to the error it names.
#[cfg(doc)]
use super::Error;

/// The kind of an [`Error`], one per variant, without its fields (`Error::kind`).
///
/// Its [`as_str`](ErrorKind::as_str) names are stable: they label the `strongbox_errors_total`
/// metric and key `StatsSnapshot::errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InvalidName`]: `"invalid_name"`.
    InvalidName,
    /// [`Error::ValueTooLarge`]: `"value_too_large"`.
    ValueTooLarge,
    /// [`Error::Conflict`]: `"conflict"`.
    Conflict,
    /// [`Error::Corrupt`]: `"corrupt"`.
    Corrupt,
    /// [`Error::Busy`]: `"busy"`.
    Busy,
    /// [`Error::Serialization`]: `"serialization"`.
    Serialization,
    /// [`Error::InvalidConfig`]: `"invalid_config"`.
    InvalidConfig,
    /// [`Error::Backend`]: `"backend"`.
    Backend,
    /// [`Error::StorageFull`]: `"storage_full"`.
    StorageFull,
    /// [`Error::Io`]: `"io"`.
    Io,
    /// [`Error::ReadOnly`]: `"read_only"`.
    ReadOnly,
    /// [`Error::Closed`]: `"closed"`.
    Closed,
    /// [`Error::BlockingInAsync`]: `"blocking_in_async"`.
    BlockingInAsync,
    /// [`Error::ChangesTrimmed`]: `"changes_trimmed"`.
    ChangesTrimmed,
    /// [`Error::Unavailable`]: `"unavailable"`.
    Unavailable,
    /// [`Error::LockTimeout`]: `"lock_timeout"`.
    LockTimeout,
    /// [`Error::RepositoryKey`]: `"repository_key"`.
    RepositoryKey,
}

impl ErrorKind {
    /// Every kind, in declaration order (`ALL[kind as usize] == kind`).
    pub(crate) const ALL: [ErrorKind; 17] = [
        ErrorKind::InvalidName,
        ErrorKind::ValueTooLarge,
        ErrorKind::Conflict,
        ErrorKind::Corrupt,
        ErrorKind::Busy,
        ErrorKind::Serialization,
        ErrorKind::InvalidConfig,
        ErrorKind::Backend,
        ErrorKind::StorageFull,
        ErrorKind::Io,
        ErrorKind::ReadOnly,
        ErrorKind::Closed,
        ErrorKind::BlockingInAsync,
        ErrorKind::ChangesTrimmed,
        ErrorKind::Unavailable,
        ErrorKind::LockTimeout,
        ErrorKind::RepositoryKey,
    ];

    /// A short stable lowercase name (`"conflict"`, `"storage_full"`...), used as a metrics
    /// label and in `StatsSnapshot::errors`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidName => "invalid_name",
            ErrorKind::ValueTooLarge => "value_too_large",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Busy => "busy",
            ErrorKind::Serialization => "serialization",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Backend => "backend",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::Io => "io",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Closed => "closed",
            ErrorKind::BlockingInAsync => "blocking_in_async",
            ErrorKind::ChangesTrimmed => "changes_trimmed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::RepositoryKey => "repository_key",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
