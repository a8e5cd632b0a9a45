//! The plain data the engines trade in: operations, rows, cursors and totals.
//!
//! **Invariant:** nothing here names an engine or does I/O; both engines produce and consume
//! exactly these types, so the layers above never learn which engine they run on.

use crate::blob::{BlobId, EncodedBlob};
use crate::record::{Expect, RecordMeta};

/// One write inside an atomic batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create or replace a record.
    Put {
        /// Validated collection name.
        collection: String,
        /// Validated key.
        key: String,
        /// The value, encoded and hashed.
        blob: EncodedBlob,
        /// The serialization format tag.
        format: u8,
        /// The condition on the record replaced.
        expect: Expect,
        /// When given, the value the record replaced must also point at (see
        /// [`WriteOp::Check`]'s).
        expect_value: Option<BlobId>,
        /// When the record expires, in milliseconds since the Unix epoch (`None`: never).
        expires_at_ms: Option<i64>,
    },
    /// Remove a record (a no-op when absent, if `expect` allows it).
    Delete {
        /// Validated collection name.
        collection: String,
        /// Validated key.
        key: String,
        /// The condition on the record removed.
        expect: Expect,
        /// When given, the value the record removed must also point at (see
        /// [`WriteOp::Check`]'s).
        expect_value: Option<BlobId>,
    },
    /// Write nothing, but fail the batch with a conflict unless the record is as `expect`
    /// says: how a transaction that read the record validates its read at commit.
    Check {
        /// Validated collection name.
        collection: String,
        /// Validated key.
        key: String,
        /// What the transaction saw: the version it read, or `Expect::Absent`.
        expect: Expect,
        /// When given, the value the record must also point at: how a transaction checks what
        /// it read, since the version alone can be reached again by other writes — after a
        /// delete, a key starts again at version 1; a staged write (`crate::staged`) that
        /// failed leaves its version to the next writer.
        expect_value: Option<BlobId>,
    },
    /// Write nothing, but fail the batch with a conflict unless the records of `range` are
    /// exactly `seen` (keys and versions, in the range's order): how a transaction that
    /// scanned a range validates it at commit, so that a key inserted into the range (a
    /// phantom) conflicts as surely as one changed or deleted.
    CheckRange {
        /// Validated collection name.
        collection: String,
        /// The range scanned, with the limit it was scanned with.
        range: ScanRange,
        /// What the scan saw.
        seen: Vec<super::RangeRow>,
    },
    /// Create a record exactly as a backup holds it: like a `Put` with `Expect::Absent` (a
    /// conflict if the key exists), with the same reference counting, but keeping the
    /// version and metadata given instead of starting at version 1 now.
    Restore {
        /// Validated collection name.
        collection: String,
        /// Validated key.
        key: String,
        /// The value, verified against its id.
        blob: EncodedBlob,
        /// The serialization format tag.
        format: u8,
        /// Version and metadata to keep.
        meta: RecordMeta,
    },
}

impl WriteOp {
    /// The `(collection, key)` the operation writes; a range check names the collection and
    /// no key (`""`, which no key is).
    pub fn target(&self) -> (&str, &str) {
        match self {
            WriteOp::CheckRange { collection, .. } => (collection, ""),
            WriteOp::Put {
                collection, key, ..
            }
            | WriteOp::Delete {
                collection, key, ..
            }
            | WriteOp::Check {
                collection, key, ..
            }
            | WriteOp::Restore {
                collection, key, ..
            } => (collection, key),
        }
    }
}

/// A record as a snapshot streams it (see [`Snapshots::snapshot`](super::Snapshots::snapshot)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// The blob it points at.
    pub blob_id: BlobId,
    /// The serialization format tag.
    pub format: u8,
    /// Version and metadata.
    pub meta: RecordMeta,
}

/// One item of a point-in-time snapshot (see [`Snapshots::snapshot`](super::Snapshots::snapshot)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotItem {
    /// How many records the snapshot holds; sent first.
    Records(u64),
    /// The change feed's position the snapshot is at, sent after `Records`: every change
    /// numbered up to it is in the snapshot, and none above it (the feed's newest committed
    /// sequence number as the snapshot sees it; 0 for a feed that never recorded a change).
    FeedPosition(u64),
    /// A record; records come in (collection, key) byte order.
    Record(SnapshotRecord),
    /// The stored bytes of a blob the caller does not have, sent once.
    Blob {
        /// The blob's id.
        id: BlobId,
        /// Its stored bytes: codec tag and payload.
        stored: Vec<u8>,
    },
}

/// A compression dictionary as a store keeps it (see `codec::dictionary`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDictionary {
    /// Its zstd dictionary id, which blobs compressed with it name.
    pub id: u32,
    /// The collection it was trained for; its newest dictionary compresses its new values.
    pub collection: String,
    /// The dictionary.
    pub bytes: Vec<u8>,
    /// When it was trained, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Compressed size over raw size that it reached on held-out values when trained.
    pub ratio: f64,
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The record was written.
    Stored {
        /// The record's metadata after the write.
        meta: RecordMeta,
        /// Whether the value was already stored (only a reference was added).
        deduplicated: bool,
    },
    /// The record was removed (`true`) or was already absent (`false`).
    Deleted(bool),
    /// The record was as a `WriteOp::Check` expected; nothing was written.
    Checked,
}

/// Read counts accumulated in memory, added to a record's metadata in one write.
#[derive(Debug, Clone)]
pub struct AccessUpdate {
    /// Collection of the record read.
    pub collection: String,
    /// Key of the record read.
    pub key: String,
    /// Reads since the last flush.
    pub reads: u64,
    /// Time of the last of them, in milliseconds since the Unix epoch.
    pub last_accessed_ms: i64,
}

/// A record as fetched: its blob's stored bytes and its metadata.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The blob the record points at.
    pub blob_id: BlobId,
    /// The blob's stored bytes; `None` when the blob is missing (a broken reference).
    pub stored: Option<Vec<u8>>,
    /// The serialization format tag.
    pub format: u8,
    /// Version and metadata.
    pub meta: RecordMeta,
    /// The seal stored with the record (see `record::seal`), for the reader to compare.
    pub seal: i64,
}

/// A record as `verify` walks it: everything its seal covers, and the seal. Names are bytes, so
/// that a damaged, non-UTF-8 name is reported instead of stopping the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCheck {
    /// The collection's name as stored.
    pub collection: Vec<u8>,
    /// The key as stored.
    pub key: Vec<u8>,
    /// The id of the blob the record points at; `None` when that blob is missing.
    pub blob_id: Option<BlobId>,
    /// The serialization format tag.
    pub format: u8,
    /// Version and metadata.
    pub meta: RecordMeta,
    /// The seal stored with the record.
    pub seal: i64,
}

/// Which keys of a collection to list, in byte order.
#[derive(Debug, Clone, Default)]
pub struct KeyRange {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys after this one (a cursor: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many keys.
    pub limit: usize,
}

/// Which records of a collection a scan reads, in key (byte) order.
#[derive(Debug, Clone)]
pub struct ScanRange {
    /// The lowest key, and whether it is included.
    pub start: std::ops::Bound<String>,
    /// The highest key, and whether it is included.
    pub end: std::ops::Bound<String>,
    /// From the highest key down.
    pub reverse: bool,
    /// At most this many records.
    pub limit: usize,
}

/// Where a walk over every blob ([`Checks::blobs_after`](super::Checks::blobs_after)) resumes,
/// in the engine's own order; opaque outside the engines. [`BlobCursor::skip`] steps over a
/// stretch that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCursor(pub(super) Position);

/// A place in an engine's order of blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Position {
    /// From the first blob.
    #[default]
    Start,
    /// After the SQLite blob with this `ref`.
    Ref(i64),
    /// After the PostgreSQL blob with this id.
    #[cfg(feature = "postgres")]
    Id(BlobId),
}

impl BlobCursor {
    /// A cursor `count` blobs further, where the engine's order allows it (SQLite's numbered
    /// blobs); `None` where it does not.
    pub fn skip(self, count: usize) -> Option<BlobCursor> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        match self.0 {
            Position::Start => Some(BlobCursor(Position::Ref(count))),
            Position::Ref(blob_ref) => {
                Some(BlobCursor(Position::Ref(blob_ref.saturating_add(count))))
            }
            #[cfg(feature = "postgres")]
            Position::Id(_) => None,
        }
    }
}

/// Totals over the whole database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    /// Number of records stored, with those expired and not yet swept.
    pub records: u64,
    /// Records that carry an expiry instant still ahead.
    pub expiring: u64,
    /// Records past their expiry instant, absent for every read, waiting for the sweep.
    pub expired: u64,
    /// Number of collections holding at least one record.
    pub collections: u64,
    /// Number of unique values stored.
    pub blobs: u64,
    /// Serialized size of every record's value, counting shared values once per record.
    pub logical_bytes: u64,
    /// Serialized size of every unique value (after deduplication, before compression).
    pub unique_bytes: u64,
    /// Stored size of every unique value (after deduplication and compression).
    pub stored_bytes: u64,
    /// Stored size of the values no record refers to any more: those the change feed still
    /// names, and those waiting for the orphan sweep. Not in `stored_bytes`.
    pub released_bytes: u64,
}

/// What the read replicas (PostgreSQL standbys) of a store did, and how far behind they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaTotals {
    /// Standbys configured.
    pub standbys: u64,
    /// Standbys that answered just now.
    pub healthy: u64,
    /// How far the furthest behind of those is from the primary's WAL, in bytes (`None` when
    /// none answered, or the primary did not).
    pub lag_bytes: Option<u64>,
    /// Reads a standby served since the store opened.
    pub reads: u64,
    /// Reads that went to the primary instead: every standby behind past the wait, failing
    /// or unreachable.
    pub fallbacks: u64,
}

/// What an orphan-blob sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Orphans removed: always 0, since a sweep that finds orphans (blobs no record points at
    /// although their count says some do) removes nothing and fails instead.
    pub blobs: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Blobs whose last reference was released and that no change names (writes leave them
    /// for the sweep).
    pub released: u64,
    /// Their stored bytes.
    pub released_bytes: u64,
}

/// What a maintenance step that an engine may not support found: the figure it measured, or
/// why the step does not apply there. A report never states a figure that was not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurement<T> {
    /// The step ran; what it measured.
    Measured(T),
    /// The step did not run, or did not measure this, on this engine: why, as a clause a
    /// report quotes after "not applicable: " or "not measured: ".
    #[cfg_attr(
        not(feature = "postgres"),
        expect(dead_code, reason = "SQLite measures every step")
    )]
    NotApplicable(&'static str),
}

/// What a WAL checkpoint did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Whether every frame was copied into the database (no reader held the WAL back).
    pub is_complete: bool,
    /// Frames in the WAL before the checkpoint.
    pub wal_frames: u64,
    /// Frames copied into the database.
    pub checkpointed_frames: u64,
}

/// A blob whose reference count disagrees with the records pointing at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefcountMismatch {
    /// The blob.
    pub blob_id: BlobId,
    /// The count stored with the blob.
    pub recorded: i64,
    /// The number of records pointing at it.
    pub actual: i64,
}

/// What the backend heard of other servers' writes, for the cache (see `crate::coherence`,
/// which keeps the cache's position in the change feed).
#[cfg_attr(
    not(feature = "postgres"),
    expect(dead_code, reason = "only PostgreSQL hears of other servers' writes")
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// This key changed.
    Key {
        /// Collection of the key.
        collection: String,
        /// The key.
        key: String,
    },
    /// Something changed that cannot be told apart (an announcement this version cannot
    /// read): forget everything cached.
    All,
    /// Announcements may have been missed (the listener lost its connection, or listens
    /// again): invalidate the keys of the changes in the feed after the last one accounted
    /// for, or everything when that cannot be done. Every later commit is announced, or
    /// followed by another `CatchUp`.
    CatchUp,
    /// Every change numbered up to this one is accounted for by the invalidations sent before
    /// this one (and the catch-ups before them), so a later `CatchUp` may start after it.
    HeardThrough(u64),
}

/// A page of the change feed and where the feed stands, read in one snapshot (see
/// [`Feed::changes_after`](super::Feed::changes_after)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// The changes found, in ascending `seq`.
    pub changes: Vec<crate::change::Change>,
    /// Every change up to and including this sequence number was trimmed (0: none).
    pub trimmed_through: u64,
    /// The oldest change still held, if any.
    pub oldest: Option<u64>,
    /// The newest sequence number committed (at least `trimmed_through`): no change at or
    /// below it can commit after this snapshot.
    pub newest: u64,
}

impl FeedPage {
    /// Each `(collection, key)` the page's changes name, once, in byte order.
    pub fn changed_keys(&self) -> Vec<(String, String)> {
        let keys: std::collections::BTreeSet<(&str, &str)> = self
            .changes
            .iter()
            .map(|change| (change.collection.as_str(), change.key.as_str()))
            .collect();
        keys.into_iter()
            .map(|(collection, key)| (collection.to_owned(), key.to_owned()))
            .collect()
    }
}

/// A page of the change feed with the record each key it names holds, all read in one
/// snapshot (see [`Feed::changes_with_records`](super::Feed::changes_with_records)).
#[derive(Debug, Clone)]
pub struct ChangedRecords {
    /// The changes and where the feed stands.
    pub page: FeedPage,
    /// Each `(collection, key)` the page's changes name, once, with its record in the same
    /// snapshot (`None`: absent); expired records included, as `Reads::get` returns them.
    pub records: Vec<((String, String), Option<StoredRecord>)>,
}

/// What a trim of the change feed keeps; a change goes when either bound says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedTrim {
    /// Trim the changes committed before this time, in milliseconds since the Unix epoch.
    pub older_than_ms: Option<i64>,
    /// Keep at most this many of the newest changes.
    pub keep_count: Option<u64>,
}
