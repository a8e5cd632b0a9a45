//! [`Version`], [`Expect`] and [`Record`]: what a caller learns about a stored value besides the value.

use std::fmt;

/// The version of a record: 1 when the key is created, plus one on every overwrite.
///
/// A deleted and re-created key starts again at 1; use [`Expect::Absent`] to create and
/// [`Expect::Version`] to update when that matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Version(u64);

impl Version {
    /// The version of a newly created record.
    pub const FIRST: Version = Version(1);

    /// Wraps a raw version number.
    pub fn new(raw: u64) -> Self {
        Version(raw)
    }

    /// The raw version number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The version that follows this one.
    pub fn next(self) -> Self {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The condition a write places on the record it replaces, checked in the database at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Expect {
    /// No condition: create or overwrite.
    #[default]
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist with exactly this version.
    Version(Version),
}

impl Expect {
    /// Whether a record currently at `actual` (`None`: absent) satisfies this condition.
    pub fn is_met_by(self, actual: Option<Version>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => actual.is_none(),
            Expect::Version(expected) => actual == Some(expected),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => f.write_str("any version"),
            Expect::Absent => f.write_str("no record"),
            Expect::Version(version) => write!(f, "version {version}"),
        }
    }
}

/// Metadata kept with every record. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// The record's current version.
    pub version: Version,
    /// When the key was first stored.
    pub created_at_ms: i64,
    /// When the value was last replaced.
    pub updated_at_ms: i64,
    /// Serialized size of the value, in bytes (before compression).
    pub size_bytes: u64,
    /// How many times the value was read. Reads are counted in memory and written in batches,
    /// so this can lag behind by the reads since the last flush.
    pub access_count: u64,
    /// When the value was last read (0: never), with the same lag as `access_count`.
    pub last_accessed_ms: i64,
}

/// A value together with its metadata, as returned by `Store::retrieve_record`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// The deserialized value.
    pub value: T,
    /// Version and metadata.
    pub meta: RecordMeta,
}
