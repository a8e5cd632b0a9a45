//! `Store::copy_into`: move a whole store to another backend (SQLite ↔ PostgreSQL), verified.
//!
//! The source streams one consistent snapshot (`Snapshots::snapshot`, the same one backups use);
//! each record is written to the target with its version and metadata (`WriteOp::Restore`) as
//! soon as its value arrives, in batched transactions. The unique values are held in memory
//! until the copy ends (the store's stored size: fine for stores that fit in RAM; a bigger one
//! moves through a backup repository instead). Every value is checked against its hash
//! on the way, and the target is verified at the end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::backend::{DictionaryStorage, SnapshotItem, SnapshotRecord, Snapshots, WriteOp};
use crate::blob::{BlobId, EncodedBlob};
use crate::error::{Error, Result};
use crate::store::Store;

/// Records written to the target per transaction.
const BATCH_RECORDS: usize = 500;

/// What [`Store::copy_into`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CopySummary {
    /// Records copied.
    pub records: u64,
    /// Unique values copied.
    pub blobs: u64,
    /// Serialized bytes of the records' values.
    pub logical_bytes: u64,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
}

impl Store {
    /// Copies every record of this store, with versions and metadata, into `target`, which
    /// must hold no records, and verifies the result. This store keeps serving meanwhile; the
    /// copy is of one instant. `progress(done, total)` is called as records are written.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when the target is not empty; `Error::Corrupt` when a value of
    /// this store fails its hash check (nothing more is copied); the backends' errors.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled copy leaves the target partly filled.
    pub async fn copy_into(
        &self,
        target: &Store,
        progress: impl Fn(u64, u64),
    ) -> Result<CopySummary> {
        let started = Instant::now();
        if target.storage_stats().await?.records > 0 {
            return Err(Error::InvalidConfig(format!(
                "the target {} already holds records; copy into an empty database",
                target.config().location()
            )));
        }
        // Values keep their encoding, so the target needs every dictionary first.
        for dictionary in self.backend().dictionaries().await? {
            target.backend().add_dictionary(dictionary).await?;
        }
        target.dictionaries().reload(target.backend()).await?;
        let (items, received) = mpsc::channel(256);
        let snapshot = self.backend().snapshot(Arc::new(HashSet::new()), items);
        let copy = self.copy_snapshot(target, received, &progress);
        let (snapshot, copied) = tokio::join!(snapshot, copy);
        let mut summary = copied?;
        snapshot?;
        check_copy(target, &summary).await?;
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    /// Writes the snapshot's records into `target` in batches as their values arrive, each
    /// value checked against its id first.
    async fn copy_snapshot(
        &self,
        target: &Store,
        mut received: mpsc::Receiver<SnapshotItem>,
        progress: &impl Fn(u64, u64),
    ) -> Result<CopySummary> {
        let mut total = 0;
        let mut waiting: HashMap<BlobId, Vec<SnapshotRecord>> = HashMap::new();
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut summary = CopySummary {
            records: 0,
            blobs: 0,
            logical_bytes: 0,
            elapsed_ms: 0,
        };
        // Values already received, for the records that point at them later. (SQLite's
        // snapshot sends a value right after its first record; others may send values last.)
        let mut values: HashMap<BlobId, (Vec<u8>, u64)> = HashMap::new();
        while let Some(item) = received.recv().await {
            let ready = match item {
                SnapshotItem::Records(count) => {
                    total = count;
                    Vec::new()
                }
                SnapshotItem::FeedPosition(_) => Vec::new(),
                SnapshotItem::Record(record) => {
                    if values.contains_key(&record.blob_id) {
                        vec![record]
                    } else {
                        waiting.entry(record.blob_id).or_default().push(record);
                        Vec::new()
                    }
                }
                SnapshotItem::Blob { id, stored } => {
                    let records = waiting.remove(&id).unwrap_or_default();
                    let raw_len = self.check_value(&id, &stored, records.first()).await?;
                    summary.blobs += 1;
                    values.insert(id, (stored, raw_len));
                    records
                }
            };
            for record in ready {
                let Some((stored, raw_len)) = values.get(&record.blob_id) else {
                    continue;
                };
                summary.records += 1;
                summary.logical_bytes += record.meta.size_bytes;
                batch.push(restore_op(record, stored.clone(), *raw_len));
                if batch.len() >= BATCH_RECORDS {
                    target.apply(std::mem::take(&mut batch)).await?;
                    progress(summary.records, total);
                }
            }
        }
        if !batch.is_empty() {
            target.apply(batch).await?;
        }
        progress(summary.records, total);
        if let Some((blob_id, records)) = waiting.into_iter().next() {
            let first = records.first();
            return Err(Error::Corrupt {
                collection: first.map(|record| record.collection.clone()),
                key: first.map(|record| record.key.clone()),
                detail: format!(
                    "the source has no value {blob_id} for {} records",
                    records.len()
                ),
            });
        }
        Ok(summary)
    }

    /// Decodes a value of the snapshot and checks it against its id; returns its raw length.
    /// A damaged one is `Error::Corrupt`, naming `first`, the first record that points at it.
    async fn check_value(
        &self,
        id: &BlobId,
        stored: &[u8],
        first: Option<&SnapshotRecord>,
    ) -> Result<u64> {
        let raw = self
            .decode_blob(id, stored)
            .await
            .map_err(|error| Error::Corrupt {
                collection: first.map(|record| record.collection.clone()),
                key: first.map(|record| record.key.clone()),
                detail: format!("blob {id}: {error}"),
            })?;
        Ok(raw.len() as u64)
    }
}

/// A snapshot record with its value, as a write that keeps its version and metadata.
fn restore_op(record: SnapshotRecord, stored: Vec<u8>, raw_len: u64) -> WriteOp {
    WriteOp::Restore {
        collection: record.collection,
        key: record.key,
        blob: EncodedBlob {
            id: record.blob_id,
            stored,
            raw_len,
        },
        format: record.format,
        meta: record.meta,
    }
}

/// Verifies the copy and compares its totals with what was copied.
async fn check_copy(target: &Store, summary: &CopySummary) -> Result<()> {
    let report = target.verify().await?;
    if let Some(problem) = report.problems.first() {
        return Err(Error::Corrupt {
            collection: problem.collection.clone(),
            key: problem.key.clone(),
            detail: format!("the copy failed verification: {}", problem.detail),
        });
    }
    let copied = target.storage_stats().await?;
    if copied.records != summary.records || copied.blobs != summary.blobs {
        return Err(Error::backend(
            "verify the copy",
            format!(
                "the target holds {} records and {} values, the snapshot {} and {}",
                copied.records, copied.blobs, summary.records, summary.blobs
            ),
        ));
    }
    Ok(())
}
