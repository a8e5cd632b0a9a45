//! The storage engines and the plain data they trade in.
//!
//! **Boundary:** only this module speaks SQL. Everything above it hands over validated names,
//! encoded blobs and conditions, and gets back rows as plain data; no engine type leaves it.
//! Collection names and keys are always bound as parameters, never formatted into SQL text.
//!
//! A backend applies a [`WriteOp`] list atomically, checking each [`Expect`] against the
//! current version and adjusting blob reference counts by the rules in [`crate::blob`], all in
//! one transaction. Backends are chosen with a plain enum and a `match` ([`Backend`]).
//! Both backends are held to the same behaviour by the conformance suite
//! (`tests/it/behaviour/`), which runs every behaviour against each.

pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::blob::{BlobId, EncodedBlob};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::{Expect, RecordMeta, Version};

pub use postgres::PostgresBackend;
pub use sqlite::SqliteBackend;

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
    },
    /// Remove a record (a no-op when absent, if `expect` allows it).
    Delete {
        /// Validated collection name.
        collection: String,
        /// Validated key.
        key: String,
        /// The condition on the record removed.
        expect: Expect,
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

/// A record as a snapshot streams it (see [`Backend::snapshot`]).
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

/// One item of a point-in-time snapshot (see [`Backend::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotItem {
    /// How many records the snapshot holds; sent first.
    Records(u64),
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

/// Two different dictionaries with the same id: zstd derives ids from content, so this is a
/// collision in 31 bits, vanishingly rare, and refused rather than risked.
pub(crate) fn dictionary_clash(id: u32) -> Error {
    Error::backend(
        "add a dictionary",
        format!("the store already holds a different dictionary with id {id:08x}"),
    )
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

/// Where a walk over every blob ([`Backend::blobs_after`]) resumes: each backend's own order.
/// [`BlobCursor::skip`] steps over a stretch that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlobCursor {
    /// From the first blob.
    #[default]
    Start,
    /// After the SQLite blob with this `ref`.
    Ref(i64),
    /// After the PostgreSQL blob with this id.
    Id(BlobId),
}

impl BlobCursor {
    /// A cursor `count` blobs further, where the backend's order allows it (SQLite's numbered
    /// blobs); `None` where it does not.
    pub fn skip(self, count: usize) -> Option<BlobCursor> {
        match self {
            BlobCursor::Start => Some(BlobCursor::Ref(i64::try_from(count).unwrap_or(i64::MAX))),
            BlobCursor::Ref(blob_ref) => Some(BlobCursor::Ref(
                blob_ref.saturating_add(i64::try_from(count).unwrap_or(i64::MAX)),
            )),
            BlobCursor::Id(_) => None,
        }
    }
}

/// Totals over the whole database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    /// Number of records.
    pub records: u64,
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
    /// Stored size of the values no record refers to any more, waiting for the orphan sweep
    /// (SQLite; always 0 on PostgreSQL, which deletes them at once). Not in `stored_bytes`.
    pub released_bytes: u64,
}

/// The condition rule both engines apply to the record a write replaces. `current` is its
/// version and whether it matches its seal (`None`: there is no record). A damaged record
/// satisfies only `Expect::Any`: its version cannot be trusted.
///
/// # Errors
/// `Error::Corrupt` for a condition on a damaged record, `Error::Conflict` for one not met.
pub(crate) fn check_expect(
    collection: &str,
    key: &str,
    expect: Expect,
    current: Option<(Version, bool)>,
) -> Result<()> {
    if current.is_some_and(|(_, is_intact)| !is_intact) && expect != Expect::Any {
        return Err(Error::corrupt_at(
            collection,
            key,
            "the record is damaged (it does not match its seal), so a conditional write \
             cannot trust its version: overwrite or delete it unconditionally, or restore it \
             from a backup",
        ));
    }
    let actual = current.map(|(version, _)| version);
    if expect.is_met_by(actual) {
        Ok(())
    } else {
        Err(Error::Conflict {
            collection: collection.to_owned(),
            key: key.to_owned(),
            expected: expect,
            actual,
        })
    }
}

/// The error of a sweep that found orphans: blobs that no record points at although their
/// count says some do. That is what a damaged record reference looks like (the record now
/// points elsewhere, and the orphan may hold the only copy of its value), so nothing is deleted.
pub(crate) fn inconsistent_store(orphans: i64, bytes: i64) -> Error {
    Error::Corrupt {
        collection: None,
        key: None,
        detail: format!(
            "{orphans} stored values ({bytes} bytes) are counted as in use but no record points \
             at them, which is what a damaged record reference looks like; nothing was deleted \
             (run `strongbox verify` to find the damaged records, and restore them from a backup)"
        ),
    }
}

/// What an orphan-blob sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Orphans removed: always 0, since a sweep that finds orphans (blobs no record points at
    /// although their count says some do) removes nothing and fails instead.
    pub blobs: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Blobs whose last reference was released (on SQLite they wait for the sweep).
    pub released: u64,
    /// Their stored bytes.
    pub released_bytes: u64,
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

/// A write committed by another server, heard through the backend's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This key changed.
    Key {
        /// Collection of the key.
        collection: String,
        /// The key.
        key: String,
    },
    /// Changes may have been missed (the listener reconnected): forget everything cached.
    All,
}

/// The storage engine of a store.
#[derive(Debug)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite(SqliteBackend),
    /// A PostgreSQL database shared by many servers.
    Postgres(PostgresBackend),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Backend::Sqlite($backend) => $call,
            Backend::Postgres($backend) => $call,
        }
    };
}

impl Backend {
    /// Opens the backend the configuration names.
    pub async fn open(config: &Config) -> Result<Self> {
        Ok(match &config.postgres_url {
            Some(url) => Backend::Postgres(PostgresBackend::open(url, config).await?),
            None => Backend::Sqlite(SqliteBackend::open(config).await?),
        })
    }

    /// Applies `ops` atomically and durably, in order; on any error nothing of them is applied.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        dispatch!(self, backend => backend.write(ops).await)
    }

    /// Adds read counts to records' metadata (records deleted meanwhile are skipped).
    pub async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        dispatch!(self, backend => backend.record_access(updates).await)
    }

    /// Queues read counts for the next commit without waiting for it (on PostgreSQL, where no
    /// writer queue exists, they are written by a short task of their own).
    pub fn queue_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        match self {
            Backend::Sqlite(sqlite) => sqlite.queue_access(updates),
            Backend::Postgres(_) => Err(Error::backend(
                "queue read counts",
                "the PostgreSQL backend records reads with record_access",
            )),
        }
    }

    /// Whether read counts must be written with `record_access` (no writer queue).
    pub fn has_writer_queue(&self) -> bool {
        matches!(self, Backend::Sqlite(_))
    }

    /// The feed of writes committed by other servers, if the backend has one; `None` after the
    /// first call.
    pub fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Postgres(postgres) => postgres.take_changes(),
        }
    }

    /// Fetches one record with its blob.
    pub async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        dispatch!(self, backend => backend.get(collection, key).await)
    }

    /// The current version of a record, if it exists.
    pub async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        dispatch!(self, backend => backend.version(collection, key).await)
    }

    /// Streams a consistent point-in-time copy of the whole store into `items`: first
    /// `SnapshotItem::Records`, then every record in (collection, key) order, and the stored
    /// bytes of each blob not in `known`, once, after the first record pointing at it. Every
    /// committed transaction is wholly in the copy or wholly out of it.
    ///
    /// Fails with `Error::Closed` when the receiver goes away.
    pub async fn snapshot(
        &self,
        known: Arc<HashSet<BlobId>>,
        items: mpsc::Sender<SnapshotItem>,
    ) -> Result<()> {
        dispatch!(self, backend => backend.snapshot(known, items).await)
    }

    /// Keys of a collection in byte order.
    pub async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        dispatch!(self, backend => backend.list(collection, range).await)
    }

    /// Number of records in a collection.
    pub async fn count(&self, collection: &str) -> Result<u64> {
        dispatch!(self, backend => backend.count(collection).await)
    }

    /// Names of the collections holding at least one record, in byte order.
    pub async fn collections(&self) -> Result<Vec<String>> {
        dispatch!(self, backend => backend.collections().await)
    }

    /// Totals over the whole database, from one snapshot.
    pub async fn totals(&self) -> Result<StorageTotals> {
        dispatch!(self, backend => backend.totals().await)
    }

    /// Bytes the database occupies on disk.
    pub async fn file_bytes(&self) -> Result<u64> {
        dispatch!(self, backend => backend.file_bytes().await)
    }

    /// Up to `limit` blobs after `after`, in the backend's order: `(id, stored bytes)`, and the
    /// cursor to resume from. Fewer than `limit` blobs means the walk is over.
    pub async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        dispatch!(self, backend => backend.blobs_after(after, limit).await)
    }

    /// The `(collection, key)` of up to `limit` records pointing at a blob.
    pub async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        dispatch!(self, backend => backend.records_of_blob(blob_id, limit).await)
    }

    /// Up to `limit` records after `after` (a `(collection, key)` as bytes; `None`: from the
    /// first), in (collection, key) byte order, for `verify`. Fewer than `limit` means the
    /// walk is over.
    pub async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        dispatch!(self, backend => backend.records_after(after, limit).await)
    }

    /// Blobs whose stored reference count is wrong.
    pub async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        dispatch!(self, backend => backend.refcount_mismatches().await)
    }

    /// Records pointing at a blob that does not exist.
    pub async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        dispatch!(self, backend => backend.dangling_records().await)
    }

    /// The engine's own consistency check: the problems it reports (empty when healthy).
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        dispatch!(self, backend => backend.integrity_check().await)
    }

    /// Refreshes the query planner's statistics (`full`: analyze everything).
    pub async fn optimize(&self, full: bool) -> Result<()> {
        dispatch!(self, backend => backend.optimize(full).await)
    }

    /// Deletes blobs no record points at.
    pub async fn collect_orphan_blobs(&self) -> Result<OrphanSweep> {
        dispatch!(self, backend => backend.collect_orphan_blobs().await)
    }

    /// Returns free space to the file system (`full`: rebuild everything); returns the number of
    /// pages released where the engine says.
    pub async fn vacuum(&self, full: bool) -> Result<u64> {
        dispatch!(self, backend => backend.vacuum(full).await)
    }

    /// Bytes of the database that hold no data (unused parts of pages and free pages), and the
    /// database's size, in bytes.
    pub async fn slack(&self) -> Result<(u64, u64)> {
        dispatch!(self, backend => backend.slack().await)
    }

    /// Copies the write-ahead log into the database (a no-op where the engine does it itself).
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        dispatch!(self, backend => backend.checkpoint().await)
    }

    /// Rebuilds every index.
    pub async fn reindex(&self) -> Result<()> {
        dispatch!(self, backend => backend.reindex().await)
    }

    /// Every compression dictionary, oldest first.
    pub async fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        dispatch!(self, backend => backend.dictionaries().await)
    }

    /// Adds a dictionary; `false` when the store already has it. A different dictionary with
    /// the same id is refused.
    pub async fn add_dictionary(&self, dictionary: StoredDictionary) -> Result<bool> {
        dispatch!(self, backend => backend.add_dictionary(dictionary).await)
    }

    /// Every collection with its number of records, in byte order.
    pub async fn collection_sizes(&self) -> Result<Vec<(String, u64)>> {
        dispatch!(self, backend => backend.collection_sizes().await)
    }

    /// Up to `limit` of a collection's values, `(id, stored bytes)`: the most recently written
    /// (`newest`) or a random sample.
    pub async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>> {
        dispatch!(self, backend => backend.sample_values(collection, limit, newest).await)
    }

    /// Up to `limit` records of a collection with keys after `after`, in key order, with their
    /// values: `(key, blob id, stored bytes)`.
    pub async fn values_after(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, BlobId, Vec<u8>)>> {
        dispatch!(self, backend => backend.values_after(collection, after, limit).await)
    }

    /// Replaces the stored bytes of existing blobs with another encoding of the same value
    /// (blobs deleted meanwhile are skipped); returns how many were replaced. The caller
    /// guarantees that each new encoding decodes to the blob's value.
    pub async fn rewrite_blobs(&self, blobs: Vec<(BlobId, Vec<u8>)>) -> Result<u64> {
        dispatch!(self, backend => backend.rewrite_blobs(blobs).await)
    }

    /// Total time callers waited for a free connection, in microseconds.
    pub fn connection_wait_micros(&self) -> u64 {
        dispatch!(self, backend => backend.connection_wait_micros())
    }

    /// Finishes what is queued and stops; later calls fail with `Error::Closed`.
    pub async fn close(&self) -> Result<()> {
        dispatch!(self, backend => backend.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_rule_over_every_expectation_and_state() {
        let v1 = Version::FIRST;
        let v2 = Version::new(2);
        let states = [None, Some((v1, true)), Some((v2, true)), Some((v1, false))];
        let expectations = [Expect::Any, Expect::Absent, Expect::Version(v1)];
        for expect in expectations {
            for current in states {
                let result = check_expect("c", "k", expect, current);
                let damaged = current.is_some_and(|(_, intact)| !intact);
                match (expect, current) {
                    (Expect::Any, _) | (Expect::Absent, None) => {
                        assert!(result.is_ok(), "{expect:?} {current:?}");
                    }
                    (Expect::Version(expected), Some((version, true))) if expected == version => {
                        assert!(result.is_ok(), "{expect:?} {current:?}");
                    }
                    _ if damaged => assert!(
                        matches!(result, Err(Error::Corrupt { .. })),
                        "{expect:?} {current:?}"
                    ),
                    _ => assert!(
                        matches!(result, Err(Error::Conflict { .. })),
                        "{expect:?} {current:?}"
                    ),
                }
            }
        }
    }
}
