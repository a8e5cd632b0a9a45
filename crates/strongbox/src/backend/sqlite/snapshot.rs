//! Point-in-time snapshots of a SQLite store ([`Snapshots`]), for backups and migrations.
//!
//! **Invariant:** a snapshot reads inside one read transaction on one connection, so in WAL
//! mode it sees exactly the commits that preceded its first read, whatever the writer commits
//! meanwhile. It holds that WAL snapshot until it ends, so a checkpoint cannot reset the WAL
//! while a backup runs; writers are never blocked.

use std::collections::HashSet;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::mpsc;

use super::SqliteBackend;
use super::convert::{map_err, meta, unsigned};
use super::feed::BOUNDS;
use crate::backend::{SnapshotItem, SnapshotRecord, Snapshots};
use crate::blob::BlobId;
use crate::clock::now_ms;
use crate::error::{Error, Result};

impl Snapshots for SqliteBackend {
    async fn snapshot(
        &self,
        known: Arc<HashSet<BlobId>>,
        items: mpsc::Sender<SnapshotItem>,
    ) -> Result<()> {
        self.readers
            .read(move |conn| {
                conn.execute_batch("BEGIN")
                    .map_err(map_err("begin a snapshot"))?;
                let streamed = stream(conn, &known, &items);
                // A read transaction has nothing to commit; ending it releases the WAL snapshot.
                let ended = conn
                    .execute_batch("COMMIT")
                    .map_err(map_err("end a snapshot"));
                streamed.and(ended)
            })
            .await
    }
}

/// Sends the record count, then every record in key order with the blobs the caller lacks.
fn stream(
    conn: &Connection,
    known: &HashSet<BlobId>,
    items: &mpsc::Sender<SnapshotItem>,
) -> Result<()> {
    let send = |item| items.blocking_send(item).map_err(|_| Error::Closed);
    // A record expired at the snapshot's instant is absent from it, as from every read.
    let now = now_ms();
    let count: i64 = conn
        .query_row(
            "SELECT count(*) FROM records WHERE expires_at IS NULL OR expires_at > ?1",
            [now],
            |row| row.get(0),
        )
        .map_err(map_err("count records for a snapshot"))?;
    send(SnapshotItem::Records(unsigned(count)))?;
    let feed: i64 = conn
        .query_row(BOUNDS, [], |row| row.get(2))
        .map_err(map_err("read the change feed's position for a snapshot"))?;
    send(SnapshotItem::FeedPosition(unsigned(feed)))?;
    let mut records = conn
        .prepare(
            "SELECT r.collection, r.key, b.id, r.format, r.version, r.created_at, r.updated_at,
                    r.size, r.access_count, r.last_accessed, r.expires_at, r.blob
             FROM records r LEFT JOIN blobs b ON b.ref = r.blob
             WHERE r.expires_at IS NULL OR r.expires_at > ?1
             ORDER BY r.collection, r.key",
        )
        .map_err(map_err("prepare the snapshot"))?;
    let mut blob = conn
        .prepare("SELECT data FROM blobs WHERE ref = ?1")
        .map_err(map_err("prepare the snapshot's blob read"))?;
    let mut rows = records.query([now]).map_err(map_err("read records"))?;
    let mut sent: HashSet<BlobId> = HashSet::new();
    while let Some(row) = rows.next().map_err(map_err("read records"))? {
        let Some(record) = record_of(row).map_err(map_err("read a record"))? else {
            let (collection, key): (String, String) = (
                row.get(0).map_err(map_err("read a record"))?,
                row.get(1).map_err(map_err("read a record"))?,
            );
            return Err(Error::corrupt_at(
                &collection,
                &key,
                "the record's value is missing",
            ));
        };
        let blob_ref: i64 = row.get(11).map_err(map_err("read a record"))?;
        let blob_id = record.blob_id;
        let (collection, key) = (record.collection.clone(), record.key.clone());
        send(SnapshotItem::Record(record))?;
        if known.contains(&blob_id) || !sent.insert(blob_id) {
            continue;
        }
        let stored: Option<Vec<u8>> = blob
            .query_row([blob_ref], |row| row.get(0))
            .optional()
            .map_err(map_err("read a blob"))?;
        let stored = stored.ok_or_else(|| {
            Error::corrupt_at(&collection, &key, format!("blob {blob_id} is missing"))
        })?;
        send(SnapshotItem::Blob {
            id: blob_id,
            stored,
        })?;
    }
    Ok(())
}

/// The record of a snapshot row; `None` when its blob is missing.
fn record_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<SnapshotRecord>> {
    let collection: String = row.get(0)?;
    let key: String = row.get(1)?;
    let Some(blob_id): Option<Vec<u8>> = row.get(2)? else {
        return Ok(None);
    };
    let blob_id = BlobId::from_slice(&blob_id).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Blob,
            format!("the blob id of {collection}/{key} is not 32 bytes").into(),
        )
    })?;
    Ok(Some(SnapshotRecord {
        blob_id,
        format: row.get(3)?,
        meta: meta(row, 4)?,
        collection,
        key,
    }))
}
