//! Maintenance on PostgreSQL: `ANALYZE`, `VACUUM` (measured in pages before and after),
//! `REINDEX` and the orphan sweep, over every Strongbox table. PostgreSQL checkpoints its own
//! write-ahead log, and measures the free space inside its pages only through an extension,
//! so those steps report that they do not apply rather than a figure nobody measured.

use deadpool_postgres::{Client, Transaction};

use super::PostgresBackend;
use super::convert::{Column, format, map_err, meta, unsigned};
use super::feed::NewChanges;
use super::refs::RefChanges;
use super::schema::TABLES;
use super::write::{Failure, classify, expire};
use crate::backend::plan::{Current, has_expired};
use crate::backend::{Checkpoint, Measurement, OrphanSweep, Upkeep, inconsistent_store};
use crate::blob::BlobId;
use crate::error::Result;

/// The size of the tables named in `$1` with their indexes, TOAST data and maps, in pages
/// (each of them is a whole number of pages).
const TABLE_PAGES: &str = "
    SELECT (coalesce(sum(pg_total_relation_size(name::regclass)), 0)
            / current_setting('block_size')::BIGINT)::BIGINT
    FROM unnest($1::TEXT[]) AS name";

impl Upkeep for PostgresBackend {
    async fn optimize(&self, _full: bool) -> Result<()> {
        let client = self.client().await?;
        client
            .batch_execute(&format!("ANALYZE {}", TABLES.join(", ")))
            .await
            .map_err(map_err("analyze the tables"))
    }

    /// Deletes the blobs left at zero references that no record points at and no change of the
    /// feed names (a put's value stays readable while its change is held). Runs at REPEATABLE
    /// READ: if a concurrent writer references a blob the sweep would delete (every put that
    /// names a blob in the feed also counts a reference to it), the sweep fails with a
    /// serialization error (and is retried at the next maintenance) instead of freeing a blob
    /// in use. A blob with a positive count and no record (a damaged reference) stops the
    /// sweep: nothing is deleted.
    async fn collect_orphan_blobs(&self) -> Result<OrphanSweep> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(map_err("begin the orphan sweep"))?;
        let row = tx
            .query_one(
                "SELECT count(*), coalesce(sum(length(b.data)), 0)::BIGINT FROM strongbox_blobs b
                 WHERE b.refcount > 0
                   AND NOT EXISTS (SELECT 1 FROM strongbox_records r WHERE r.blob_id = b.id)",
                &[],
            )
            .await
            .map_err(map_err("find orphan blobs"))?;
        let (orphans, orphan_bytes): (i64, i64) = (row.column(0)?, row.column(1)?);
        if orphans > 0 {
            return Err(inconsistent_store(orphans, orphan_bytes));
        }
        let row = tx
            .query_one(
                "WITH gone AS (
                    DELETE FROM strongbox_blobs b
                    WHERE b.refcount = 0
                      AND NOT EXISTS (SELECT 1 FROM strongbox_records r WHERE r.blob_id = b.id)
                      AND NOT EXISTS (SELECT 1 FROM strongbox_changes c WHERE c.blob_id = b.id)
                    RETURNING length(b.data) AS bytes)
                 SELECT count(*), coalesce(sum(bytes), 0)::BIGINT FROM gone",
                &[],
            )
            .await
            .map_err(map_err("delete released blobs"))?;
        tx.commit()
            .await
            .map_err(map_err("commit the orphan sweep"))?;
        Ok(OrphanSweep {
            blobs: 0,
            bytes: 0,
            released: unsigned(row.column(0)?),
            released_bytes: unsigned(row.column(1)?),
        })
    }

    /// `VACUUM (ANALYZE)`, or with `full` `VACUUM (FULL, ANALYZE)`, which rewrites the tables
    /// under an exclusive lock. A plain `VACUUM` makes dead rows' space reusable and returns
    /// only empty pages at a table's end. The pages released are the tables' size before minus
    /// after, so what other servers write meanwhile is netted in.
    async fn vacuum(&self, full: bool) -> Result<u64> {
        let client = self.client().await?;
        let before = table_pages(&client).await?;
        let options = if full { "FULL, ANALYZE" } else { "ANALYZE" };
        client
            .batch_execute(&format!("VACUUM ({options}) {}", TABLES.join(", ")))
            .await
            .map_err(map_err("vacuum the tables"))?;
        let after = table_pages(&client).await?;
        Ok(before.saturating_sub(after))
    }

    /// Not measured: without the `pgstattuple` extension PostgreSQL does not say how much of
    /// its pages is free, and its autovacuum reuses that space itself. So maintenance never
    /// forces a `VACUUM FULL`, which would lock every server out of the tables.
    async fn slack(&self) -> Result<Measurement<(u64, u64)>> {
        Ok(Measurement::NotApplicable(
            "PostgreSQL's autovacuum reuses the free space inside its pages, and a full vacuum \
             runs only on request",
        ))
    }

    /// PostgreSQL checkpoints its write-ahead log on its own schedule; forcing one
    /// (`CHECKPOINT`, for superusers and `pg_checkpoint`) would flush the whole server's
    /// buffers, every database's, not this store's.
    async fn checkpoint(&self) -> Result<Measurement<Checkpoint>> {
        Ok(Measurement::NotApplicable(
            "the PostgreSQL server checkpoints its own write-ahead log",
        ))
    }

    /// Not told apart: other servers write all the time, and maintenance never forces a full
    /// vacuum on PostgreSQL (see `slack`), which is what the marker decides.
    async fn others_commit_marker(&self) -> Result<Measurement<u64>> {
        Ok(Measurement::NotApplicable(
            "other servers' writes are not told apart on PostgreSQL",
        ))
    }

    /// Rows are locked `FOR UPDATE SKIP LOCKED`: a record a writer holds is left to that
    /// writer (which expires it itself) or to the next batch, and two servers sweeping at once
    /// share the work instead of queueing.
    async fn sweep_expired(&self, now_ms: i64, limit: usize) -> Result<(usize, u64)> {
        let mut client = self.client().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = client
                .transaction()
                .await
                .map_err(map_err("begin the expiry sweep"))?;
            let result = match sweep_in(&tx, now_ms, limit, self.is_change_feed_on).await {
                Ok(swept) => tx
                    .commit()
                    .await
                    .map(|()| swept)
                    .map_err(classify("commit the expiry sweep")),
                Err(failure) => Err(failure),
            };
            match result {
                Ok(swept) => return Ok(swept),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) if attempt >= SWEEP_ATTEMPTS => {
                    return Err(map_err("sweep expired records")(error));
                }
                Err(Failure::Retry(_)) => {}
            }
        }
    }

    async fn reindex(&self) -> Result<()> {
        let client = self.client().await?;
        let statements: Vec<String> = TABLES
            .iter()
            .map(|table| format!("REINDEX TABLE {table}"))
            .collect();
        client
            .batch_execute(&statements.join("; "))
            .await
            .map_err(map_err("rebuild the indexes"))
    }
}

/// Attempts of an expiry sweep that keeps losing races (deadlocks on reference counts).
const SWEEP_ATTEMPTS: u32 = 5;

/// Up to `$2` records expired at `$1`, soonest first, locked (skipping those a writer holds).
const EXPIRED: &str = "
    SELECT collection, key, blob_id, format, version, created_at, updated_at, size,
           access_count, last_accessed, expires_at, seal
    FROM strongbox_records WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
    FOR UPDATE SKIP LOCKED";

/// One batch of the expiry sweep in `tx`: `(examined, deleted)`; `expired` changes only when
/// the store's change feed is on.
async fn sweep_in(
    tx: &Transaction<'_>,
    now_ms: i64,
    limit: usize,
    is_change_feed_on: bool,
) -> std::result::Result<(usize, u64), Failure> {
    let statement = tx
        .prepare_cached(EXPIRED)
        .await
        .map_err(classify("prepare the expiry sweep"))?;
    let rows = tx
        .query(
            &statement,
            &[&now_ms, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await
        .map_err(classify("find expired records"))?;
    let mut refs = RefChanges::default();
    let mut changes = NewChanges::new(is_change_feed_on);
    let mut deleted = 0;
    for row in &rows {
        let (collection, key): (String, String) = (row.column(0)?, row.column(1)?);
        let blob_id = BlobId::from_slice(row.column(2)?);
        let found = Current {
            blob_id,
            blob_ref: blob_id,
            format: format(row, 3)?,
            meta: meta(row, 4)?,
            seal: row.column(11)?,
        };
        if has_expired(Some(&found), &collection, &key, now_ms) {
            expire(tx, (&collection, &key), &found, &mut refs, &mut changes).await?;
            deleted += 1;
        }
    }
    refs.apply(tx).await?;
    changes.append(tx, now_ms).await?;
    Ok((rows.len(), deleted))
}

/// The size of every Strongbox table with its indexes, TOAST data and maps, in pages.
async fn table_pages(client: &Client) -> Result<u64> {
    let row = client
        .query_one(TABLE_PAGES, &[&TABLES.as_slice()])
        .await
        .map_err(map_err("measure the tables"))?;
    Ok(unsigned(row.column(0)?))
}
