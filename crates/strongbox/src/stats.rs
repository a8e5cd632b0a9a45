//! [`StorageStats`]: what the database holds and what compression and deduplication saved.

use crate::backend::StorageTotals;
use crate::error::Result;
use crate::store::Store;

/// Totals over a whole store. The field names are a stable interface (the CLI's `stats --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageStats {
    /// Number of records.
    pub records: u64,
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
    /// Bytes the database occupies on disk (for SQLite: the file plus its WAL), including
    /// indexes and free pages.
    pub file_bytes: u64,
    /// Bytes saved by deduplication: `logical_bytes - unique_bytes`.
    pub dedup_saved_bytes: u64,
    /// Bytes saved by compression: `unique_bytes - stored_bytes` (negative savings count as 0;
    /// each stored blob carries a one-byte codec tag).
    pub compression_saved_bytes: u64,
}

impl From<StorageTotals> for StorageStats {
    fn from(totals: StorageTotals) -> Self {
        StorageStats {
            records: totals.records,
            collections: totals.collections,
            blobs: totals.blobs,
            logical_bytes: totals.logical_bytes,
            unique_bytes: totals.unique_bytes,
            stored_bytes: totals.stored_bytes,
            file_bytes: 0,
            dedup_saved_bytes: totals.logical_bytes.saturating_sub(totals.unique_bytes),
            compression_saved_bytes: totals.unique_bytes.saturating_sub(totals.stored_bytes),
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
        stats.file_bytes = self.backend().file_bytes();
        Ok(stats)
    }
}
