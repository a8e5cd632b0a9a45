//! Maintenance on the SQLite file: what writes runs as short jobs on the writer connection
//! between group commits (one chunk of the incremental vacuum, one batch of the orphan sweep),
//! what only reads (the orphan search, the slack measurement) on a reader, so writes wait at most
//! one job and reads, in WAL mode, never wait. A full vacuum is the one long job.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::SqliteBackend;
use super::apply::sweep_expired;
use super::convert::{map_err, unsigned};
use super::writer::Request;
use crate::backend::{Checkpoint, Measurement, OrphanSweep, Upkeep, inconsistent_store};
use crate::error::{Error, Result};

/// How long a checkpoint waits for readers before settling for a partial one.
const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Free pages returned to the file system per incremental-vacuum job.
const VACUUM_CHUNK_PAGES: i64 = 2048;

/// The blobs no record points at, as of a reader's snapshot: the released ones (count 0) that
/// no change of the feed names, `(ref, stored bytes)`, which the sweep deletes; and orphans (a
/// positive count), which it reports. (`IN` a subquery that yields a NULL is never false:
/// hence `IS NOT NULL`.)
const UNREFERENCED_BLOBS: &str = "
    SELECT b.ref, length(b.data), coalesce(c.refcount, 0) AS refcount
    FROM blobs b LEFT JOIN blob_refs c ON c.ref = b.ref
    WHERE b.ref NOT IN (SELECT blob FROM records)
      AND (coalesce(c.refcount, 0) > 0
           OR b.ref NOT IN (SELECT blob FROM changes WHERE blob IS NOT NULL))";

/// Deletes one released blob if it still is: its count is still 0 (a write that took it back
/// raised it) and no change newer than the snapshot (`?2`) names it.
const DELETE_RELEASED: &str = "
    DELETE FROM blobs WHERE ref = ?1
      AND coalesce((SELECT refcount FROM blob_refs WHERE ref = ?1), 0) = 0
      AND NOT EXISTS (SELECT 1 FROM changes WHERE seq > ?2 AND blob = blobs.ref)";

/// Released blobs deleted per writer job.
const SWEEP_BATCH: usize = 500;

/// Bytes holding no data (unused parts of pages and free pages), and the database's size.
const SLACK: &str = "
    SELECT coalesce(sum(unused), 0)
             + (SELECT freelist_count FROM pragma_freelist_count)
               * (SELECT page_size FROM pragma_page_size),
           (SELECT page_count FROM pragma_page_count) * (SELECT page_size FROM pragma_page_size)
    FROM dbstat WHERE aggregate = TRUE";

impl SqliteBackend {
    /// Runs `job` alone on the writer connection and returns its result.
    pub(super) async fn exclusive<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Exclusive(Box::new(move |conn| {
            let _ = reply.send(job(conn));
        })))?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|error| error.busy_after(self.busy_timeout))
    }
}

impl Upkeep for SqliteBackend {
    async fn optimize(&self, full: bool) -> Result<()> {
        self.exclusive(move |conn| {
            let sql = if full {
                "ANALYZE"
            } else {
                "PRAGMA analysis_limit = 1000; PRAGMA optimize"
            };
            conn.execute_batch(sql)
                .map_err(map_err("optimize the query planner statistics"))
        })
        .await
    }

    /// Only a blob whose count is zero, that no record points at *and* that no change of the
    /// feed names is deleted (a put's value stays readable while its change is held). A blob
    /// with a positive count and no record (an orphan) means that a record's reference was
    /// damaged (it then points elsewhere, and this blob may be the only copy of its value): the
    /// sweep then deletes nothing and fails with `Error::Corrupt`.
    ///
    /// The search (a pass over every blob and record) runs on a reader's snapshot, so writers
    /// never wait for it; the writer then deletes the blobs it found in jobs of
    /// [`SWEEP_BATCH`], each checking again that its blob is still released: a count is exact,
    /// so a record written since the snapshot that took the blob back has raised it, and a
    /// change recorded since is newer than the snapshot's last.
    async fn collect_orphan_blobs(&self) -> Result<OrphanSweep> {
        let (released, orphans, orphan_bytes, snapshot_seq) = self
            .readers
            .read(|conn| {
                // One snapshot for the feed's newest change and the search.
                let tx = conn
                    .unchecked_transaction()
                    .map_err(map_err("begin the orphan search"))?;
                let newest: i64 = tx
                    .query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |row| {
                        row.get(0)
                    })
                    .map_err(map_err("read the feed's newest change"))?;
                let rows = tx
                    .prepare(UNREFERENCED_BLOBS)
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, i64>(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("find unreferenced blobs"))?;
                let (mut released, mut orphans, mut orphan_bytes) = (Vec::new(), 0i64, 0i64);
                for (blob, bytes, refcount) in rows {
                    if refcount > 0 {
                        orphans += 1;
                        orphan_bytes += bytes;
                    } else {
                        released.push(blob);
                    }
                }
                Ok((released, orphans, orphan_bytes, newest))
            })
            .await?;
        if orphans > 0 {
            return Err(inconsistent_store(orphans, orphan_bytes));
        }
        let mut sweep = OrphanSweep::default();
        for batch in released.chunks(SWEEP_BATCH) {
            let batch = batch.to_vec();
            let (deleted, bytes) = self
                .exclusive(move |conn| delete_released(conn, &batch, snapshot_seq))
                .await?;
            sweep.released += deleted;
            sweep.released_bytes += bytes;
        }
        Ok(sweep)
    }

    async fn vacuum(&self, full: bool) -> Result<u64> {
        if full {
            return self
                .exclusive(|conn| {
                    let before = page_count(conn)?;
                    conn.execute_batch("VACUUM")
                        .map_err(map_err("vacuum the database"))?;
                    Ok(before.saturating_sub(page_count(conn)?))
                })
                .await;
        }
        let mut freed = 0u64;
        loop {
            let (released, remaining) = self
                .exclusive(|conn| {
                    let auto_vacuum: i64 = conn
                        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
                        .map_err(map_err("read auto_vacuum"))?;
                    // 2 = incremental; other files can only shrink with a full vacuum.
                    if auto_vacuum != 2 {
                        return Ok((0, 0));
                    }
                    let before = freelist_count(conn)?;
                    if before == 0 {
                        return Ok((0, 0));
                    }
                    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES})"))
                        .map_err(map_err("vacuum free pages"))?;
                    let after = freelist_count(conn)?;
                    Ok((before.saturating_sub(after), after))
                })
                .await?;
            freed += released;
            if released == 0 || remaining == 0 {
                return Ok(freed);
            }
        }
    }

    async fn slack(&self) -> Result<Measurement<(u64, u64)>> {
        self.readers
            .read(|conn| {
                conn.query_row(SLACK, [], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .map(|(unused, total)| Measurement::Measured((unsigned(unused), unsigned(total))))
                .map_err(map_err("measure unused space"))
            })
            .await
    }

    /// `PRAGMA data_version` on the writer connection: it changes when any other connection
    /// commits, never for the writer's own commits.
    async fn others_commit_marker(&self) -> Result<Measurement<u64>> {
        self.exclusive(|conn| {
            conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))
                .map(|version| Measurement::Measured(unsigned(version)))
                .map_err(map_err("read the data version"))
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Measurement<Checkpoint>> {
        let busy_timeout = self.busy_timeout;
        self.exclusive(move |conn| {
            // A TRUNCATE checkpoint waits for readers (a long backup holds one); the writer
            // must not stall that long, so it waits briefly and reports what it could copy.
            conn.busy_timeout(CHECKPOINT_WAIT)
                .map_err(map_err("set the busy timeout"))?;
            let checkpoint = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok(Checkpoint {
                        is_complete: row.get::<_, i64>(0)? == 0,
                        wal_frames: unsigned(row.get(1)?),
                        checkpointed_frames: unsigned(row.get(2)?),
                    })
                })
                .map_err(map_err("checkpoint the WAL"));
            conn.busy_timeout(busy_timeout)
                .map_err(map_err("set the busy timeout"))?;
            checkpoint.map(Measurement::Measured)
        })
        .await
    }

    async fn sweep_expired(&self, now_ms: i64, limit: usize) -> Result<(usize, u64)> {
        self.exclusive(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err("begin the expiry sweep"))?;
            let swept = sweep_expired(&tx, now_ms, limit)?;
            tx.commit().map_err(map_err("commit the expiry sweep"))?;
            Ok(swept)
        })
        .await
    }

    async fn reindex(&self) -> Result<()> {
        self.exclusive(|conn| {
            conn.execute_batch("REINDEX")
                .map_err(map_err("rebuild the indexes"))
        })
        .await
    }
}

/// Deletes the blobs of `batch` that are still released (see [`DELETE_RELEASED`]), and their
/// counts, in one transaction: how many, and their stored bytes.
fn delete_released(conn: &mut Connection, batch: &[i64], snapshot_seq: i64) -> Result<(u64, u64)> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err("begin the orphan sweep"))?;
    let (mut deleted, mut bytes) = (0u64, 0u64);
    {
        let mut size = tx
            .prepare_cached("SELECT length(data) FROM blobs WHERE ref = ?1")
            .map_err(map_err("measure a released blob"))?;
        let mut delete = tx
            .prepare_cached(DELETE_RELEASED)
            .map_err(map_err("delete a released blob"))?;
        let mut forget = tx
            .prepare_cached("DELETE FROM blob_refs WHERE ref = ?1")
            .map_err(map_err("delete a released blob's count"))?;
        for &blob in batch {
            let stored: Option<i64> = size
                .query_row([blob], |row| row.get(0))
                .optional()
                .map_err(map_err("measure a released blob"))?;
            if delete
                .execute(rusqlite::params![blob, snapshot_seq])
                .map_err(map_err("delete a released blob"))?
                == 1
            {
                forget
                    .execute([blob])
                    .map_err(map_err("delete a released blob's count"))?;
                deleted += 1;
                bytes += unsigned(stored.unwrap_or(0));
            }
        }
    }
    tx.commit().map_err(map_err("commit the orphan sweep"))?;
    Ok((deleted, bytes))
}

fn page_count(conn: &Connection) -> Result<u64> {
    conn.query_row("PRAGMA page_count", [], |row| row.get::<_, i64>(0))
        .map(|pages| pages.max(0).unsigned_abs())
        .map_err(map_err("read the page count"))
}

fn freelist_count(conn: &Connection) -> Result<u64> {
    conn.query_row("PRAGMA freelist_count", [], |row| row.get::<_, i64>(0))
        .map(|pages| pages.max(0).unsigned_abs())
        .map_err(map_err("read the free page count"))
}
