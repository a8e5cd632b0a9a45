//! Maintenance on PostgreSQL: `ANALYZE`, `VACUUM`, `REINDEX` and the orphan sweep. PostgreSQL
//! checkpoints and checks its pages itself, so those steps do nothing here.

use super::PostgresBackend;
use super::convert::{map_err, unsigned};
use crate::backend::{Checkpoint, OrphanSweep, Upkeep, inconsistent_store};
use crate::error::Result;

const TABLES: &str = "strongbox_records, strongbox_blobs";

impl Upkeep for PostgresBackend {
    async fn optimize(&self, _full: bool) -> Result<()> {
        let client = self.client().await?;
        client
            .batch_execute(&format!("ANALYZE {TABLES}"))
            .await
            .map_err(map_err("analyze the tables"))
    }

    /// . Runs at REPEATABLE READ: if a concurrent writer
    /// references a blob the sweep would delete, the sweep fails with a serialization error
    /// (and is retried at the next maintenance) instead of freeing a blob in use. A blob with a
    /// positive count and no record (a damaged reference) stops the sweep: nothing is deleted.
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
        let (orphans, orphan_bytes): (i64, i64) = (
            row.try_get(0).map_err(map_err("count orphan blobs"))?,
            row.try_get(1).map_err(map_err("count orphan blobs"))?,
        );
        if orphans > 0 {
            return Err(inconsistent_store(orphans, orphan_bytes));
        }
        let row = tx
            .query_one(
                "WITH gone AS (
                    DELETE FROM strongbox_blobs b
                    WHERE b.refcount = 0
                      AND NOT EXISTS (SELECT 1 FROM strongbox_records r WHERE r.blob_id = b.id)
                    RETURNING length(b.data) AS bytes)
                 SELECT count(*), coalesce(sum(bytes), 0)::BIGINT FROM gone",
                &[],
            )
            .await
            .map_err(map_err("delete released blobs"))?;
        tx.commit()
            .await
            .map_err(map_err("commit the orphan sweep"))?;
        // Writers delete a blob with its last reference; a count left at zero is released.
        Ok(OrphanSweep {
            blobs: 0,
            bytes: 0,
            released: unsigned(row.try_get(0).map_err(map_err("count released blobs"))?),
            released_bytes: unsigned(row.try_get(1).map_err(map_err("count released blobs"))?),
        })
    }

    /// . PostgreSQL does not report pages, so this returns 0; the report's
    /// byte counts show the effect.
    async fn vacuum(&self, full: bool) -> Result<u64> {
        let client = self.client().await?;
        let sql = if full {
            format!("VACUUM (FULL, ANALYZE) {TABLES}")
        } else {
            format!("VACUUM (ANALYZE) {TABLES}")
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(map_err("vacuum the tables"))?;
        Ok(0)
    }

    /// PostgreSQL's own autovacuum manages free space, so this reports
    /// none and maintenance never forces `VACUUM FULL`.
    async fn slack(&self) -> Result<(u64, u64)> {
        Ok((0, 0))
    }

    /// PostgreSQL checkpoints on its own schedule.
    async fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            is_complete: true,
            wal_frames: 0,
            checkpointed_frames: 0,
        })
    }

    async fn reindex(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .batch_execute("REINDEX TABLE strongbox_records; REINDEX TABLE strongbox_blobs")
            .await
            .map_err(map_err("rebuild the indexes"))
    }
}
