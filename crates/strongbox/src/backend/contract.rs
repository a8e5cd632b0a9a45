//! The contract both engines implement, one trait per room of an engine.
//!
//! Every method means the same on SQLite and PostgreSQL; the conformance suite
//! (`tests/it/behaviour/`) holds both engines to it. An engine implements each trait in the file
//! of the same idea (`sqlite/read.rs` implements [`Reads`], `postgres/verify.rs` [`Checks`]...),
//! and [`Backend`](super::Backend) dispatches to the engine a store runs on.
//!
//! The methods are `async fn` on purpose: the dispatch is static (an enum, never `dyn`), so the
//! futures keep their concrete, `Send` types.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::types::{
    AccessUpdate, BlobCursor, ChangedRecords, Checkpoint, FeedPage, FeedTrim, Invalidation,
    KeyRange, Measurement, OrphanSweep, RecordCheck, RefcountMismatch, ReplicaTotals, ScanRange,
    SnapshotItem, StorageTotals, StoredDictionary, StoredRecord, WriteOp, WriteOutcome,
};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::Version;

/// What every engine is: its name, its size, its feed of other servers' writes, its end.
pub trait Engine {
    /// The engine's name as backups record it: `"sqlite"` or `"postgres"`.
    fn name(&self) -> &'static str;

    /// Bytes the database occupies on disk (SQLite: the file and its WAL; PostgreSQL: every
    /// Strongbox table with its indexes, TOAST data, free space and visibility maps).
    async fn file_bytes(&self) -> Result<u64>;

    /// Total time callers waited for a free connection, in microseconds.
    fn connection_wait_micros(&self) -> u64;

    /// The keys written by other servers sharing the database, heard as they commit, and when
    /// to catch up from the change feed on what may not have been heard ([`Invalidation`]), so
    /// that caches stay coherent; `None` after the first call, and from an engine without such
    /// servers (an SQLite file belongs to one process's store).
    fn take_invalidations(&self) -> Option<mpsc::UnboundedReceiver<Invalidation>>;

    /// What the read replicas served and how far behind they are, measured now; `None` for a
    /// store without replicas (and every SQLite store).
    async fn replica_totals(&self) -> Option<ReplicaTotals> {
        None
    }

    /// Finishes what is queued and stops; later calls fail with `Error::Closed`.
    async fn close(&self) -> Result<()>;
}

/// Point reads and listings.
///
/// Expiry: `get` and `get_many` return a record whatever its expiry instant, so that the
/// caller compares its seal before believing the instant (`store::has_expired`); every other
/// read leaves out the records expired at the time of the call.
pub trait Reads {
    /// Fetches one record with its blob.
    ///
    /// On PostgreSQL with read replicas, this and the other reads may be served by a standby
    /// that has replayed every write committed through this store (read-your-writes).
    async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>>;

    /// As [`Reads::get`], from the server that takes writes (the primary), never a standby:
    /// for reads whose version becomes a write's condition (`Store::transact`), so that they
    /// see other servers' commits as soon as the primary does. An engine without replicas
    /// reads as `get`.
    async fn get_latest(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        self.get(collection, key).await
    }

    /// Several records of one collection with their blobs, in the order of `keys` (`None`
    /// where a key has no record), in one round trip.
    async fn get_many(
        &self,
        collection: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<StoredRecord>>>;

    /// Up to `range.limit` records of a collection in `range`, with their blobs, in key order
    /// (or reversed), read in one statement: `(key, record)`.
    async fn scan(&self, collection: &str, range: ScanRange)
    -> Result<Vec<(String, StoredRecord)>>;

    /// As [`Reads::scan`], from the primary (see [`Reads::get_latest`]).
    async fn scan_latest(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        self.scan(collection, range).await
    }

    /// The current version of a record, if it exists.
    async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>>;

    /// Keys of a collection in byte order.
    async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>>;

    /// Number of records in a collection.
    async fn count(&self, collection: &str) -> Result<u64>;

    /// Names of the collections holding at least one record, in byte order.
    async fn collections(&self) -> Result<Vec<String>>;

    /// Totals over the whole database, from one snapshot (on PostgreSQL, of the primary).
    async fn totals(&self) -> Result<StorageTotals>;
}

/// Writes: each batch executes the plans of `super::plan` in one transaction.
pub trait Writes {
    /// Applies `ops` atomically and durably, in order; on any error nothing of them is applied.
    /// Each operation's condition is checked and its reference counts adjusted by the rule in
    /// `super::plan`.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>>;

    /// Adds read counts to records' metadata (records deleted meanwhile are skipped). Read
    /// counts are statistics: they do not change a record's version or seal.
    async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()>;
}

/// Consistent copies of the whole store, for backups and migrations.
pub trait Snapshots {
    /// Streams a consistent point-in-time copy of the whole store into `items`: first
    /// `SnapshotItem::Records`, then every record in (collection, key) order, and the stored
    /// bytes of each blob not in `known`, once, after the first record pointing at it. Every
    /// committed transaction is wholly in the copy or wholly out of it.
    ///
    /// Fails with `Error::Closed` when the receiver goes away.
    async fn snapshot(
        &self,
        known: Arc<HashSet<BlobId>>,
        items: mpsc::Sender<SnapshotItem>,
    ) -> Result<()>;
}

/// The walks and counts `verify` checks the store with.
pub trait Checks {
    /// Up to `limit` blobs after `after`, in the engine's order: `(id, stored bytes)`, and the
    /// cursor to resume from. Fewer than `limit` blobs means the walk is over.
    async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)>;

    /// The `(collection, key)` of up to `limit` records pointing at a blob.
    async fn records_of_blob(&self, blob_id: BlobId, limit: usize)
    -> Result<Vec<(String, String)>>;

    /// Up to `limit` records after `after` (a `(collection, key)` as bytes; `None`: from the
    /// first), in (collection, key) byte order. Fewer than `limit` means the walk is over.
    async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>>;

    /// Blobs whose stored reference count is wrong.
    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>>;

    /// Records pointing at a blob that does not exist.
    async fn dangling_records(&self) -> Result<Vec<(String, String)>>;

    /// The engine's own consistency check of its pages and indexes: the problems it reports
    /// (empty when healthy), or why the engine has no such check it can run here (PostgreSQL
    /// without the `amcheck` extension).
    async fn integrity_check(&self) -> Result<Measurement<Vec<String>>>;
}

/// Maintenance: statistics, space, logs and indexes.
pub trait Upkeep {
    /// Refreshes the query planner's statistics (`full`: analyze everything).
    async fn optimize(&self, full: bool) -> Result<()>;

    /// Deletes the blobs no record points at, none is counted for and no change of the feed
    /// names (a put's value stays readable while its change is in the feed). A blob counted
    /// as in use that no record points at fails the sweep with [`inconsistent_store`],
    /// deleting nothing.
    async fn collect_orphan_blobs(&self) -> Result<OrphanSweep>;

    /// Returns free space to the file system (`full`: rebuild everything); returns the number
    /// of pages by which the database shrank, measured before and after (PostgreSQL: its 8 KiB
    /// pages, net of what other servers wrote meanwhile).
    async fn vacuum(&self, full: bool) -> Result<u64>;

    /// Bytes of the database that hold no data (unused parts of pages and free pages), and the
    /// database's size, in bytes; or why the engine cannot measure them.
    async fn slack(&self) -> Result<Measurement<(u64, u64)>>;

    /// Copies the write-ahead log into the database; or why that does not apply (an engine
    /// that checkpoints its log itself).
    async fn checkpoint(&self) -> Result<Measurement<Checkpoint>>;

    /// A number that changes whenever another connection (another process, or another `Store`
    /// on the same database) commits a write, and not for this store's own; or why the engine
    /// cannot tell. Read twice, it says whether anyone else wrote in between.
    async fn others_commit_marker(&self) -> Result<Measurement<u64>>;

    /// Rebuilds every index.
    async fn reindex(&self) -> Result<()>;

    /// Deletes up to `limit` records expired at `now_ms`, soonest first, in one transaction,
    /// each as a write that finds an expired record does: its reference released and an
    /// `expired` change appended. Returns `(examined, deleted)`: fewer examined than `limit`
    /// means none is left; a damaged record (one that does not match its seal) is examined
    /// but left for `verify`.
    async fn sweep_expired(&self, now_ms: i64, limit: usize) -> Result<(usize, u64)>;
}

/// Compression dictionaries and the values they are trained on and applied to.
pub trait DictionaryStorage {
    /// Every compression dictionary, oldest first.
    async fn dictionaries(&self) -> Result<Vec<StoredDictionary>>;

    /// Adds a dictionary; `false` when the store already has it. A different dictionary with
    /// the same id is refused with [`dictionary_clash`].
    async fn add_dictionary(&self, dictionary: StoredDictionary) -> Result<bool>;

    /// Every collection with its number of records, in byte order.
    async fn collection_sizes(&self) -> Result<Vec<(String, u64)>>;

    /// Up to `limit` of a collection's values, `(id, stored bytes)`: the most recently written
    /// (`newest`) or a random sample.
    async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>>;

    /// Up to `limit` records of a collection with keys after `after`, in key order, with their
    /// values: `(key, blob id, stored bytes)`.
    async fn values_after(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, BlobId, Vec<u8>)>>;

    /// Replaces the stored bytes of existing blobs with another encoding of the same value
    /// (blobs deleted meanwhile are skipped); returns how many were replaced. The caller
    /// guarantees that each new encoding decodes to the blob's value.
    async fn rewrite_blobs(&self, blobs: Vec<(BlobId, Vec<u8>)>) -> Result<u64>;
}

/// The change feed: every committed put and delete, numbered in commit order.
///
/// Each write that changes a record appends its change in the write's own transaction, so a
/// change exists exactly when its write committed; `seq` is store-wide and strictly increasing
/// in commit order, so no change below a number already seen can commit later.
pub trait Feed {
    /// Up to `limit` changes with `seq > since` (of `collection` only, if given), ascending,
    /// with where the feed stands, all from one snapshot.
    async fn changes_after(
        &self,
        since: u64,
        limit: usize,
        collection: Option<&str>,
    ) -> Result<FeedPage>;

    /// As [`Feed::changes_after`] over every collection, with the record each changed key
    /// holds, from the same snapshot (on PostgreSQL, of the primary): the records are the
    /// state after every change up to the page's `newest`, so when the page ends there they
    /// are exactly the state its last change left (`backup follow` ships them).
    async fn changes_with_records(&self, since: u64, limit: usize) -> Result<ChangedRecords>;

    /// Deletes the oldest changes as `trim` says, always a prefix of the feed, and records the
    /// highest sequence number deleted; returns how many were deleted.
    async fn trim_changes(&self, trim: FeedTrim) -> Result<u64>;

    /// The stored bytes (codec tag and payload) of the blob `blob_id`, as a change names it;
    /// `None` when the store no longer holds it. The orphan sweep keeps every blob a change
    /// names ([`Upkeep::collect_orphan_blobs`]), so a put's value is here while its change is.
    async fn blob(&self, blob_id: BlobId) -> Result<Option<Vec<u8>>>;
}

/// Two different dictionaries with the same id: zstd derives ids from content, so this is a
/// collision in 31 bits, vanishingly rare, and refused rather than risked.
pub(crate) fn dictionary_clash(id: u32) -> Error {
    Error::backend(
        "add a dictionary",
        format!("the store already holds a different dictionary with id {id:08x}"),
    )
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
