//! Point-in-time snapshots of a PostgreSQL store for backups.
//!
//! **Invariant:** a snapshot is one `REPEATABLE READ READ ONLY` transaction, so every query in
//! it sees the same committed state, whatever other servers commit meanwhile. Records are read
//! through a cursor in pages; the blobs the caller lacks are fetched afterwards, in the same
//! transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::PostgresBackend;
use super::convert::{Column, format, map_err, meta, unsigned};
use super::feed::BOUNDS;
use super::read::read_snapshot;
use crate::backend::{SnapshotItem, SnapshotRecord, Snapshots};
use crate::blob::BlobId;
use crate::clock::now_ms;
use crate::error::{Error, Result};

/// Records fetched per round trip.
const PAGE_RECORDS: usize = 1000;

/// Blobs fetched per round trip.
const PAGE_BLOBS: usize = 128;

impl Snapshots for PostgresBackend {
    async fn snapshot(
        &self,
        known: Arc<HashSet<BlobId>>,
        items: mpsc::Sender<SnapshotItem>,
    ) -> Result<()> {
        let send = |item| {
            let items = items.clone();
            async move { items.send(item).await.map_err(|_| Error::Closed) }
        };
        let mut client = self.client().await?;
        let tx = read_snapshot(&mut client, "begin a snapshot").await?;
        // A record expired at the snapshot's instant is absent from it, as from every read.
        let now = now_ms();
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM strongbox_records
                 WHERE expires_at IS NULL OR expires_at > $1",
                &[&now],
            )
            .await
            .map_err(map_err("count records for a snapshot"))?
            .column(0)?;
        send(SnapshotItem::Records(unsigned(count))).await?;
        send(SnapshotItem::FeedPosition(feed_position(&tx).await?)).await?;
        // A cursor's query takes no parameters; `now` is a number, written out.
        tx.batch_execute(&format!(
            "DECLARE strongbox_snapshot NO SCROLL CURSOR FOR
             SELECT collection, key, blob_id, format, version, created_at, updated_at, size,
                    access_count, last_accessed, expires_at
             FROM strongbox_records WHERE expires_at IS NULL OR expires_at > {now}
             ORDER BY collection, key"
        ))
        .await
        .map_err(map_err("open the snapshot cursor"))?;
        // Blobs to send, with the first record needing each (to name it if it is missing).
        let mut needed: Vec<(BlobId, String, String)> = Vec::new();
        let mut seen: HashSet<BlobId> = HashSet::new();
        let fetch = format!("FETCH {PAGE_RECORDS} FROM strongbox_snapshot");
        loop {
            let rows = tx
                .query(fetch.as_str(), &[])
                .await
                .map_err(map_err("read records"))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let collection: String = row.column(0)?;
                let key: String = row.column(1)?;
                let blob_id = BlobId::from_slice(row.column(2)?).ok_or_else(|| {
                    Error::corrupt_at(&collection, &key, "the record's blob id is not 32 bytes")
                })?;
                if !known.contains(&blob_id) && seen.insert(blob_id) {
                    needed.push((blob_id, collection.clone(), key.clone()));
                }
                let record = SnapshotRecord {
                    blob_id,
                    format: format(&row, 3)?,
                    meta: meta(&row, 4)?,
                    collection,
                    key,
                };
                send(SnapshotItem::Record(record)).await?;
            }
        }
        for page in needed.chunks(PAGE_BLOBS) {
            let ids: Vec<&[u8]> = page
                .iter()
                .map(|(blob_id, _, _)| blob_id.as_bytes().as_slice())
                .collect();
            let rows = tx
                .query(
                    "SELECT id, data FROM strongbox_blobs WHERE id = ANY($1)",
                    &[&ids],
                )
                .await
                .map_err(map_err("read blobs"))?;
            let mut found: HashMap<BlobId, Vec<u8>> = HashMap::with_capacity(rows.len());
            for row in &rows {
                if let Some(id) = BlobId::from_slice(row.column(0)?) {
                    found.insert(id, row.column(1)?);
                }
            }
            for (blob_id, collection, key) in page {
                let stored = found.remove(blob_id).ok_or_else(|| {
                    Error::corrupt_at(collection, key, format!("blob {blob_id} is missing"))
                })?;
                send(SnapshotItem::Blob {
                    id: *blob_id,
                    stored,
                })
                .await?;
            }
        }
        tx.commit().await.map_err(map_err("end a snapshot"))
    }
}

/// The feed's newest committed sequence number in the snapshot `tx` sees.
async fn feed_position(tx: &deadpool_postgres::Transaction<'_>) -> Result<u64> {
    let newest: i64 = tx
        .query_one(BOUNDS, &[])
        .await
        .map_err(map_err("read the change feed's position for a snapshot"))?
        .column(2)?;
    Ok(unsigned(newest))
}
