//! [`Backend`]: the engine a store runs on, chosen by its configuration, and the static dispatch
//! of the contract's traits to it (no `dyn`: each call is a `match` on two variants).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::contract::{Checks, DictionaryStorage, Engine, Feed, Reads, Snapshots, Upkeep, Writes};
#[cfg(feature = "postgres")]
use super::postgres::PostgresBackend;
use super::sqlite::SqliteBackend;
use super::types::{
    AccessUpdate, BlobCursor, ChangedRecords, Checkpoint, FeedPage, FeedTrim, Invalidation,
    KeyRange, Measurement, OrphanSweep, RecordCheck, RefcountMismatch, ReplicaTotals, ScanRange,
    SnapshotItem, StorageTotals, StoredDictionary, StoredRecord, WriteOp, WriteOutcome,
};
use crate::blob::BlobId;
use crate::config::Config;
use crate::error::Result;
use crate::record::Version;

/// The storage engine of a store.
#[derive(Debug)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite(SqliteBackend),
    /// A PostgreSQL database shared by many servers (with the `postgres` feature).
    #[cfg(feature = "postgres")]
    Postgres(PostgresBackend),
}

impl Backend {
    /// Opens the engine the configuration names: PostgreSQL for a `postgres_url`, else the
    /// SQLite file at `path`.
    ///
    /// # Errors
    /// The engine's, and `Error::InvalidConfig` for a `postgres_url` in a build without the
    /// `postgres` feature.
    pub async fn open(config: &Config) -> Result<Self> {
        match &config.postgres_url {
            #[cfg(feature = "postgres")]
            Some(url) => Ok(Backend::Postgres(PostgresBackend::open(url, config).await?)),
            #[cfg(not(feature = "postgres"))]
            Some(url) => Err(crate::error::Error::InvalidConfig(format!(
                "{} is a PostgreSQL database, and this build of Strongbox has no PostgreSQL \
                 support: enable the crate's `postgres` feature",
                url.redacted()
            ))),
            None => Ok(Backend::Sqlite(SqliteBackend::open(config).await?)),
        }
    }

    /// Whether this engine applies a process's write requests in the order they were sent
    /// (SQLite's single writer does; PostgreSQL's writer tasks commit checked requests side by
    /// side), which is what lets transactions chain on each other's staged writes
    /// (`crate::staged`).
    pub fn applies_in_order(&self) -> bool {
        matches!(self, Backend::Sqlite(_))
    }
}

/// Calls the same method on whichever engine this is.
macro_rules! forward {
    ($self:ident, $engine:ident => $call:expr) => {
        match $self {
            Backend::Sqlite($engine) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($engine) => $call,
        }
    };
}

impl Engine for Backend {
    fn name(&self) -> &'static str {
        forward!(self, engine => engine.name())
    }

    async fn file_bytes(&self) -> Result<u64> {
        forward!(self, engine => engine.file_bytes().await)
    }

    fn connection_wait_micros(&self) -> u64 {
        forward!(self, engine => engine.connection_wait_micros())
    }

    fn take_invalidations(&self) -> Option<mpsc::UnboundedReceiver<Invalidation>> {
        forward!(self, engine => engine.take_invalidations())
    }

    async fn replica_totals(&self) -> Option<ReplicaTotals> {
        forward!(self, engine => engine.replica_totals().await)
    }

    async fn close(&self) -> Result<()> {
        forward!(self, engine => engine.close().await)
    }
}

impl Reads for Backend {
    async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        forward!(self, engine => engine.get(collection, key).await)
    }

    async fn get_latest(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        forward!(self, engine => engine.get_latest(collection, key).await)
    }

    async fn get_many(
        &self,
        collection: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<StoredRecord>>> {
        forward!(self, engine => engine.get_many(collection, keys).await)
    }

    async fn scan_latest(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        forward!(self, engine => engine.scan_latest(collection, range).await)
    }

    async fn scan(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        forward!(self, engine => engine.scan(collection, range).await)
    }

    async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        forward!(self, engine => engine.version(collection, key).await)
    }

    async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        forward!(self, engine => engine.list(collection, range).await)
    }

    async fn count(&self, collection: &str) -> Result<u64> {
        forward!(self, engine => engine.count(collection).await)
    }

    async fn collections(&self) -> Result<Vec<String>> {
        forward!(self, engine => engine.collections().await)
    }

    async fn totals(&self) -> Result<StorageTotals> {
        forward!(self, engine => engine.totals().await)
    }
}

impl Writes for Backend {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        forward!(self, engine => engine.write(ops).await)
    }

    async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        forward!(self, engine => engine.record_access(updates).await)
    }
}

impl Snapshots for Backend {
    async fn snapshot(
        &self,
        known: Arc<HashSet<BlobId>>,
        items: mpsc::Sender<SnapshotItem>,
    ) -> Result<()> {
        forward!(self, engine => engine.snapshot(known, items).await)
    }
}

impl Checks for Backend {
    async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        forward!(self, engine => engine.blobs_after(after, limit).await)
    }

    async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        forward!(self, engine => engine.records_of_blob(blob_id, limit).await)
    }

    async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        forward!(self, engine => engine.records_after(after, limit).await)
    }

    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        forward!(self, engine => engine.refcount_mismatches().await)
    }

    async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        forward!(self, engine => engine.dangling_records().await)
    }

    async fn integrity_check(&self) -> Result<Measurement<Vec<String>>> {
        forward!(self, engine => engine.integrity_check().await)
    }
}

impl Upkeep for Backend {
    async fn optimize(&self, full: bool) -> Result<()> {
        forward!(self, engine => engine.optimize(full).await)
    }

    async fn collect_orphan_blobs(&self) -> Result<OrphanSweep> {
        forward!(self, engine => engine.collect_orphan_blobs().await)
    }

    async fn vacuum(&self, full: bool) -> Result<u64> {
        forward!(self, engine => engine.vacuum(full).await)
    }

    async fn slack(&self) -> Result<Measurement<(u64, u64)>> {
        forward!(self, engine => engine.slack().await)
    }

    async fn checkpoint(&self) -> Result<Measurement<Checkpoint>> {
        forward!(self, engine => engine.checkpoint().await)
    }

    async fn others_commit_marker(&self) -> Result<Measurement<u64>> {
        forward!(self, engine => engine.others_commit_marker().await)
    }

    async fn reindex(&self) -> Result<()> {
        forward!(self, engine => engine.reindex().await)
    }

    async fn sweep_expired(&self, now_ms: i64, limit: usize) -> Result<(usize, u64)> {
        forward!(self, engine => engine.sweep_expired(now_ms, limit).await)
    }
}

impl DictionaryStorage for Backend {
    async fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        forward!(self, engine => engine.dictionaries().await)
    }

    async fn add_dictionary(&self, dictionary: StoredDictionary) -> Result<bool> {
        forward!(self, engine => engine.add_dictionary(dictionary).await)
    }

    async fn collection_sizes(&self) -> Result<Vec<(String, u64)>> {
        forward!(self, engine => engine.collection_sizes().await)
    }

    async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>> {
        forward!(self, engine => engine.sample_values(collection, limit, newest).await)
    }

    async fn values_after(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, BlobId, Vec<u8>)>> {
        forward!(self, engine => engine.values_after(collection, after, limit).await)
    }

    async fn rewrite_blobs(&self, blobs: Vec<(BlobId, Vec<u8>)>) -> Result<u64> {
        forward!(self, engine => engine.rewrite_blobs(blobs).await)
    }
}

impl Feed for Backend {
    async fn changes_after(
        &self,
        since: u64,
        limit: usize,
        collection: Option<&str>,
    ) -> Result<FeedPage> {
        forward!(self, engine => engine.changes_after(since, limit, collection).await)
    }

    async fn changes_with_records(&self, since: u64, limit: usize) -> Result<ChangedRecords> {
        forward!(self, engine => engine.changes_with_records(since, limit).await)
    }

    async fn trim_changes(&self, trim: FeedTrim) -> Result<u64> {
        forward!(self, engine => engine.trim_changes(trim).await)
    }

    async fn blob(&self, blob_id: BlobId) -> Result<Option<Vec<u8>>> {
        forward!(self, engine => engine.blob(blob_id).await)
    }
}
