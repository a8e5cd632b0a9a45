//! [`StorageStats`]: what the database holds and what compression and deduplication saved;
//! [`StatsSnapshot`]: that plus operation counts, latencies, cache and error counters.

use std::collections::BTreeMap;

use crate::backend::{Engine, Reads, ReplicaTotals, StorageTotals};
use crate::cache::CacheStats;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::telemetry::{OpStats, Operation, WriteStats, name};

/// Totals over a whole store. The field names are a stable interface (the CLI's `stats --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageStats {
    /// Number of records stored, counting those expired and not yet swept (`expired`).
    pub records: u64,
    /// Records that carry an expiry instant still ahead of them.
    #[serde(default)]
    pub expiring: u64,
    /// Records past their expiry instant: absent for every read, deleted by the next sweep
    /// (maintenance, or the expiry task every `expiry_sweep_interval_secs`).
    #[serde(default)]
    pub expired: u64,
    /// Number of collections holding at least one record.
    pub collections: u64,
    /// Number of unique values stored.
    pub blobs: u64,
    /// Serialized size of all records' values, in bytes, counting a shared value once per record.
    pub logical_bytes: u64,
    /// Serialized size of the unique values, in bytes (after deduplication, before compression).
    pub unique_bytes: u64,
    /// Bytes of stored blobs, after compression and deduplication.
    pub stored_bytes: u64,
    /// Bytes the database occupies on disk (for SQLite: the file plus its WAL; for PostgreSQL:
    /// every Strongbox table with its indexes and TOAST data), including indexes and free pages.
    pub file_bytes: u64,
    /// Bytes saved by deduplication: `logical_bytes - unique_bytes`.
    pub dedup_saved_bytes: u64,
    /// Bytes saved by compression: `unique_bytes - stored_bytes` (negative savings count as 0;
    /// each stored blob carries a one-byte codec tag).
    pub compression_saved_bytes: u64,
    /// Collections whose new values are compressed with a trained zstd dictionary.
    #[serde(default)]
    pub dictionary_collections: u64,
    /// Stored bytes of values no record refers to any more. A write leaves them for
    /// maintenance's orphan sweep, which removes each once no change of the change feed names
    /// it: the value of a put stays readable while its change is held (`Store::change_value`),
    /// so this includes the old values of the changes within `changes_retention_secs` and
    /// `changes_retention_count`. Not part of `stored_bytes`.
    #[serde(default)]
    pub released_bytes: u64,
}

impl From<StorageTotals> for StorageStats {
    fn from(totals: StorageTotals) -> Self {
        StorageStats {
            records: totals.records,
            expiring: totals.expiring,
            expired: totals.expired,
            collections: totals.collections,
            blobs: totals.blobs,
            logical_bytes: totals.logical_bytes,
            unique_bytes: totals.unique_bytes,
            stored_bytes: totals.stored_bytes,
            file_bytes: 0,
            dedup_saved_bytes: totals.logical_bytes.saturating_sub(totals.unique_bytes),
            compression_saved_bytes: totals.unique_bytes.saturating_sub(totals.stored_bytes),
            dictionary_collections: 0,
            released_bytes: totals.released_bytes,
        }
    }
}

/// What a PostgreSQL store's read replicas (`Config::postgres_replicas`) did, and their lag.
/// The field names are a stable interface (the CLI's `stats --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStats {
    /// Standbys configured.
    pub standbys: u64,
    /// Standbys that answered when the statistics were read.
    pub healthy: u64,
    /// How far the furthest behind of those had replayed the primary's WAL, in bytes,
    /// measured when the statistics were read (`None` when no standby or the primary did not
    /// answer).
    pub lag_bytes: Option<u64>,
    /// Reads a standby served since the store opened (cache hits are not reads here).
    pub reads: u64,
    /// Reads that went to the primary instead since the store opened: no standby had replayed
    /// this store's latest commit within `replica_wait_ms`, or the standbys failed.
    pub fallbacks: u64,
}

impl From<ReplicaTotals> for ReplicaStats {
    fn from(totals: ReplicaTotals) -> Self {
        ReplicaStats {
            standbys: totals.standbys,
            healthy: totals.healthy,
            lag_bytes: totals.lag_bytes,
            reads: totals.reads,
            fallbacks: totals.fallbacks,
        }
    }
}

impl StorageStats {
    /// `stored_bytes / logical_bytes`: what a byte of values costs on disk (1.0 for an empty store).
    pub fn stored_ratio(&self) -> f64 {
        if self.logical_bytes == 0 {
            1.0
        } else {
            self.stored_bytes as f64 / self.logical_bytes as f64
        }
    }
}

impl Store {
    /// Totals over the whole store, read in one consistent snapshot.
    ///
    /// # Errors
    /// `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn storage_stats(&self) -> Result<StorageStats> {
        let mut stats = StorageStats::from(self.backend().totals().await?);
        stats.file_bytes = self.backend().file_bytes().await?;
        stats.dictionary_collections = self.dictionaries().load().collections() as u64;
        Ok(stats)
    }

    /// What the read replicas served and how far behind they are now (each standby asked
    /// for its position, waiting at most a second for each); `None` without
    /// `Config::postgres_replicas`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn replica_stats(&self) -> Option<ReplicaStats> {
        self.backend()
            .replica_totals()
            .await
            .map(ReplicaStats::from)
    }
}

/// Everything an operator wants to know about a store at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// What the database holds.
    pub storage: StorageStats,
    /// `store` and `store_if` calls.
    pub store: OpStats,
    /// `retrieve` and `retrieve_record` calls.
    pub retrieve: OpStats,
    /// `delete` and `delete_if` calls.
    pub delete: OpStats,
    /// `Transaction::commit` calls.
    pub commit: OpStats,
    /// The read cache.
    pub cache: CacheStats,
    /// Deduplication and compression on the write path since the store opened.
    pub writes: WriteStats,
    /// Total time reads waited for a free connection, in milliseconds.
    pub connection_wait_ms: u64,
    /// The read replicas, on PostgreSQL with `Config::postgres_replicas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStats>,
    /// Failed calls by `Error::kind`, since the store opened.
    pub errors: BTreeMap<String, u64>,
}

impl Store {
    /// A snapshot of the operation counters, latencies, cache and storage totals.
    ///
    /// # Errors
    /// `Error::Busy`, `Error::Backend` when the storage totals cannot be read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn stats(&self) -> Result<StatsSnapshot> {
        let recorder = self.recorder();
        Ok(StatsSnapshot {
            storage: self.storage_stats().await?,
            store: recorder.op_stats(Operation::Store),
            retrieve: recorder.op_stats(Operation::Retrieve),
            delete: recorder.op_stats(Operation::Delete),
            commit: recorder.op_stats(Operation::Commit),
            cache: self.cache().stats(),
            writes: recorder.write_stats(),
            connection_wait_ms: self.backend().connection_wait_micros() / 1000,
            replicas: self.replica_stats().await,
            errors: recorder.errors(),
        })
    }

    /// Saves read counts, sets the storage gauges of the `metrics` facade (`strongbox_records`,
    /// `strongbox_stored_bytes`..., and `strongbox_backup_age_seconds` when `backup_repository`
    /// is set) and logs a summary. The statistics task calls it every `stats_interval_secs`;
    /// call it to refresh an exporter now.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn publish_metrics(&self) {
        self.flush_access();
        match self.stats().await {
            Ok(stats) => {
                let storage = &stats.storage;
                for (gauge, value) in [
                    (name::RECORDS, storage.records),
                    (name::EXPIRED_RECORDS, storage.expired),
                    (name::BLOBS, storage.blobs),
                    (name::LOGICAL_BYTES, storage.logical_bytes),
                    (name::STORED_BYTES, storage.stored_bytes),
                    (name::FILE_BYTES, storage.file_bytes),
                    (name::RELEASED_BYTES, storage.released_bytes),
                    (name::DICTIONARY_COLLECTIONS, storage.dictionary_collections),
                    (name::CACHE_ENTRIES, stats.cache.entries),
                    (name::CACHE_BYTES, stats.cache.bytes),
                ] {
                    metrics::gauge!(gauge).set(value as f64);
                }
                if let Some(replicas) = &stats.replicas {
                    publish_replicas(replicas);
                }
                tracing::info!(
                    records = storage.records,
                    stored_bytes = storage.stored_bytes,
                    stores = stats.store.count,
                    retrieves = stats.retrieve.count,
                    cache_hit_ratio = stats.cache.hit_ratio,
                    "storage statistics"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot read storage statistics"),
        }
        if let Some(age) = self.backup_age_seconds().await {
            metrics::gauge!(name::BACKUP_AGE).set(age);
        }
    }

    /// Seconds since the newest backup in `backup_repository`: infinite when it holds none
    /// (or is not a repository yet), so that an alert on the age fires; `None` when no
    /// repository is configured or it cannot be read (logged).
    async fn backup_age_seconds(&self) -> Option<f64> {
        let dir = self.config().backup_repository.as_ref()?;
        let newest = match crate::backup::configured_newest_ms(self).await {
            // Not a repository (yet): the first scheduled backup creates it.
            Err(Error::InvalidConfig(_)) => Ok(None),
            newest => newest,
        };
        if newest.is_err() {
            crate::backup::forget_unlocked(self);
        }
        match newest {
            Ok(Some(created_at_ms)) => {
                Some(now_ms().saturating_sub(created_at_ms).max(0) as f64 / 1000.0)
            }
            Ok(None) => Some(f64::INFINITY),
            Err(error) => {
                tracing::warn!(%error, repository = %dir.display(), "cannot read the newest backup");
                None
            }
        }
    }
}

/// The replicas' lag gauge and their counters (set to the store's own counts: the backend
/// counts in memory, below the `metrics` facade, and the counters follow at each report).
fn publish_replicas(replicas: &ReplicaStats) {
    if let Some(lag) = replicas.lag_bytes {
        metrics::gauge!(name::REPLICA_LAG_BYTES).set(lag as f64);
    }
    metrics::counter!(name::REPLICA_READS).absolute(replicas.reads);
    metrics::counter!(name::REPLICA_FALLBACKS).absolute(replicas.fallbacks);
}
