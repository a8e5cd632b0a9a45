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
    /// The key must exist with exactly this version. Versions count the writes of a key
    /// since it was created: a key deleted and created again starts again at version 1, so
    /// a version read before a delete can match the new record. Where that matters (a lease
    /// released and taken again), use [`crate::Store::transact`], which checks the value read
    /// too.
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

/// When a record expires: set by the write that stores it (see [`PutOptions`]).
///
/// From its expiry instant a record is absent for every read (point reads, batch reads, scans,
/// listings, counts, exports, backups, transactions) and for every condition
/// ([`Expect::Absent`] is met); maintenance, or the expiry task, then deletes it with an
/// `expired` change in the feed. Each write sets the expiry anew: a write without one makes
/// the record permanent again. Instants are the writing process's clock, and are compared
/// with the clock of the process that reads (on PostgreSQL, several servers' clocks: keep them
/// in sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Expiry {
    /// The record does not expire (the default).
    #[default]
    Never,
    /// The record expires this long after the write (its time to live).
    After(std::time::Duration),
    /// The record expires at this instant.
    At(std::time::SystemTime),
}

impl Expiry {
    /// The expiry instant of a write made at `now_ms`, in milliseconds since the Unix epoch
    /// (`None`: never). An instant beyond the range of milliseconds is taken as never; one
    /// before the epoch as the epoch (already expired).
    pub(crate) fn instant_ms(self, now_ms: i64) -> Option<i64> {
        match self {
            Expiry::Never => None,
            Expiry::After(ttl) => i64::try_from(ttl.as_millis())
                .ok()
                .and_then(|ttl| now_ms.checked_add(ttl)),
            Expiry::At(instant) => match instant.duration_since(std::time::UNIX_EPOCH) {
                Ok(since) => i64::try_from(since.as_millis()).ok(),
                Err(_) => Some(0),
            },
        }
    }
}

/// The options of a write that stores a value: its condition and its expiry.
///
/// ```
/// use std::time::Duration;
/// use strongbox::{Expect, PutOptions};
/// let session = PutOptions::new().ttl(Duration::from_secs(30 * 60));
/// let invitation = PutOptions::new().expect(Expect::Absent).ttl(Duration::from_secs(3600));
/// # let _ = (session, invitation);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct PutOptions {
    /// The condition on the record replaced (default: none).
    pub expect: Expect,
    /// When the record written expires (default: never).
    pub expiry: Expiry,
}

impl PutOptions {
    /// No condition, no expiry: what `store` and `put` do.
    pub fn new() -> Self {
        PutOptions::default()
    }

    /// Writes only if the record replaced meets `expect`.
    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// The record expires `ttl` after the write.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// The record expires at `instant`.
    pub fn expires_at(mut self, instant: std::time::SystemTime) -> Self {
        self.expiry = Expiry::At(instant);
        self
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
    /// When the record expires (`None`: never). From that instant it is absent for every
    /// read and condition, and maintenance deletes it with an `expired` change.
    pub expires_at_ms: Option<i64>,
}

impl RecordMeta {
    /// Whether the record has expired at `now_ms` (milliseconds since the Unix epoch): it
    /// expires at its `expires_at_ms` exactly.
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
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
/// its value — collection, key, format, version, creation and update times, serialized size,
/// the value's [`BlobId`](crate::blob::BlobId) and, for a record that expires, its expiry
/// instant — stored in the record and compared on every read and by `verify`.
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
/// The expiry instant is hashed last and only when there is one, so the seals of records that
/// never expire (all those written before expiry existed) are unchanged.
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
    if let Some(expires_at_ms) = meta.expires_at_ms {
        hasher.update(&expires_at_ms.to_le_bytes());
    }
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
            expires_at_ms: None,
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
        let changes: [fn(&mut RecordMeta); 6] = [
            |m| m.version = Version::new(4),
            |m| m.created_at_ms += 1,
            |m| m.updated_at_ms += 1,
            |m| m.size_bytes += 1,
            |m| m.expires_at_ms = Some(1_700_000_001_000),
            |m| m.expires_at_ms = Some(0),
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
