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

/// A record's seal: 8 bytes of a keyed BLAKE3 over everything that identifies the record and
/// its value — collection, key, format, version, creation and update times, serialized size and
/// the value's [`BlobId`](crate::blob::BlobId) — stored in the record and compared on every
/// read and by `verify`.
///
/// It is what binds a row to its own key and to its own value: a flipped bit in a key (which
/// would rename the record), in a version, or in the reference to the blob (which would point
/// the record at another record's value) makes the seal disagree, and the read fails with
/// `Error::Corrupt` instead of returning another value. Read statistics (`access_count`,
/// `last_accessed_ms`) are left out: they change on every flush of read counts, and a fault
/// there changes a statistic, never a value. A chance fault passes with probability 2⁻⁶⁴.
///
/// Names are taken as bytes, so that a damaged, non-UTF-8 key still gets a seal to compare.
///
/// **Never changes:** what it covers and how (the on-disk format stores it).
pub(crate) fn seal(
    collection: &[u8],
    key: &[u8],
    blob_id: &crate::blob::BlobId,
    format: u8,
    meta: &RecordMeta,
) -> i64 {
    let mut hasher = blake3::Hasher::new_derive_key("strongbox 2026 record seal v1");
    // Lengths first, so that no two (collection, key) pairs hash the same bytes.
    hasher.update(&(collection.len() as u64).to_le_bytes());
    hasher.update(collection);
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(blob_id.as_bytes());
    hasher.update(&[format]);
    hasher.update(&meta.version.get().to_le_bytes());
    hasher.update(&meta.created_at_ms.to_le_bytes());
    hasher.update(&meta.updated_at_ms.to_le_bytes());
    hasher.update(&meta.size_bytes.to_le_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(first)
}

#[cfg(test)]
mod seal_tests {
    use super::*;
    use crate::blob::BlobId;

    fn meta() -> RecordMeta {
        RecordMeta {
            version: Version::new(3),
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_500,
            size_bytes: 120,
            access_count: 0,
            last_accessed_ms: 0,
        }
    }

    #[test]
    fn every_sealed_field_changes_the_seal_and_read_counts_do_not() {
        let id = BlobId::of(b"value");
        let base = seal(b"players", b"alice", &id, 1, &meta());
        assert_ne!(base, seal(b"players", b"alicf", &id, 1, &meta()));
        assert_ne!(base, seal(b"playerz", b"alice", &id, 1, &meta()));
        // The same bytes split differently between collection and key.
        assert_ne!(base, seal(b"playersa", b"lice", &id, 1, &meta()));
        assert_ne!(
            base,
            seal(b"players", b"alice", &BlobId::of(b"other"), 1, &meta())
        );
        assert_ne!(base, seal(b"players", b"alice", &id, 2, &meta()));
        let changes: [fn(&mut RecordMeta); 4] = [
            |m| m.version = Version::new(4),
            |m| m.created_at_ms += 1,
            |m| m.updated_at_ms += 1,
            |m| m.size_bytes += 1,
        ];
        for change in changes {
            let mut changed = meta();
            change(&mut changed);
            assert_ne!(base, seal(b"players", b"alice", &id, 1, &changed));
        }
        let mut read = meta();
        read.access_count = 99;
        read.last_accessed_ms = 5;
        assert_eq!(base, seal(b"players", b"alice", &id, 1, &read));
    }
}
