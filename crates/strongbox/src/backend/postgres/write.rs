//! Writes on PostgreSQL: requests are committed in groups ([`super::group`]), at READ
//! COMMITTED, with row locks.
//!
//! - A group locks the rows of every key it names `FOR UPDATE`, in key order, so version
//!   checks and increments are exact while other servers write the same keys; a key that did
//!   not exist is created with a plain `INSERT`, which fails with a unique violation if another
//!   server created it meanwhile (the group is then retried) ([`super::batch`]).
//! - Each operation's plan comes from `backend::plan`, the rule both engines share.
//! - Reference counts change after the records, as one net delta per blob, in blob-id order
//!   (so requests sharing popular values queue instead of deadlocking): see [`super::refs`].
//! - Every written key is announced with `pg_notify` inside the transaction, so other servers
//!   hear of it exactly when it commits.
//! - The changes go to the change feed last, numbered under the feed's lock (see
//!   [`super::feed`]), which is then held only until `COMMIT`: one lock and one flush per
//!   group.
//! - A commit that validates reads (`transact`) runs alone and SERIALIZABLE (see `write`).

use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

use super::PostgresBackend;
use super::convert::{Column, map_err, to_i64, unsigned};
use super::feed::NewChanges;
use super::read::scan_bounds;
use super::refs::RefChanges;
use crate::backend::RangeRow;
use crate::backend::plan::Current;
use crate::backend::{AccessUpdate, ScanRange, WriteOp, WriteOutcome, Writes};
use crate::blob::BlobId;
use crate::change::ChangeKind;
use crate::error::{Error, Result};
use crate::record::{Expect, Version};

/// The keys and versions of a collection's records between optional bounds (`NULL`: none)
/// that have not expired at `$7`, in the order given: what a range check compares.
macro_rules! range_sql {
    ($order:literal) => {
        concat!(
            "SELECT key, version, blob_id FROM strongbox_records
             WHERE collection = $1
               AND ($2::text IS NULL OR key >= $2) AND ($3::text IS NULL OR key > $3)
               AND ($4::text IS NULL OR key <= $4) AND ($5::text IS NULL OR key < $5)
               AND (expires_at IS NULL OR expires_at > $7)
             ORDER BY key ",
            $order,
            " LIMIT $6"
        )
    };
}

/// Removes one record.
const DELETE_RECORD: &str = "DELETE FROM strongbox_records WHERE collection = $1 AND key = $2";

/// Read counts added to a record.
const ADD_ACCESS: &str = "
    UPDATE strongbox_records SET access_count = access_count + $3,
        last_accessed = GREATEST(last_accessed, $4)
    WHERE collection = $1 AND key = $2";

/// The channel on which committed writes are announced.
pub const CHANGES_CHANNEL: &str = "strongbox_changes";

/// Why an attempt failed.
pub(super) enum Failure {
    /// A race with another transaction: try again.
    Retry(tokio_postgres::Error),
    /// A real error.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Fatal(error)
    }
}

/// Classifies a driver error: races are retried, the rest mapped.
pub(super) fn classify(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Failure {
    move |error| {
        let is_race = matches!(
            error.code(),
            Some(code) if *code == SqlState::UNIQUE_VIOLATION
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
        );
        if is_race {
            Failure::Retry(error)
        } else {
            Failure::Fatal(map_err(action)(error))
        }
    }
}

impl Writes for PostgresBackend {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                action: "write".into(),
            });
        }
        let validates_reads = ops
            .iter()
            .any(|op| matches!(op, WriteOp::Check { .. } | WriteOp::CheckRange { .. }));
        let has_condition = ops.iter().any(|op| match op {
            WriteOp::Put { expect, .. } | WriteOp::Delete { expect, .. } => *expect != Expect::Any,
            WriteOp::Check { .. } | WriteOp::CheckRange { .. } | WriteOp::Restore { .. } => true,
        });
        // A request with a condition runs alone: its transaction waits for the rows it names in
        // PostgreSQL's lock queue, first come first served, so callers contending for a key
        // take turns. In a group, the first caller back after a conflict (the last winner) would
        // be planned against the fresh row first and win every time, starving the others: one
        // of 64 tasks incrementing one counter through `transact` lost 1,000 times in a row.
        // A commit that validates reads runs SERIALIZABLE: its checks then also see the inserts
        // of concurrent transactions that would make it non-serializable, which row locks alone
        // would miss (a missing row locks nothing); those fail with a serialization failure and
        // are retried. Its range checks read the database, which holds none of a group's
        // planned writes.
        if validates_reads {
            self.writer
                .write_alone(ops, IsolationLevel::Serializable)
                .await
        } else if has_condition {
            self.writer
                .write_alone(ops, IsolationLevel::ReadCommitted)
                .await
        } else {
            self.writer.write(ops).await
        }
    }

    async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        // Read counts are statistics: a read-only store keeps none.
        if self.read_only {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(map_err("begin recording reads"))?;
        let statement = tx
            .prepare_cached(ADD_ACCESS)
            .await
            .map_err(map_err("prepare the access update"))?;
        // In key order, as groups lock rows, so the two queue instead of deadlocking.
        let mut updates = updates;
        updates.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
        for update in &updates {
            tx.execute(
                &statement,
                &[
                    &update.collection,
                    &update.key,
                    &to_i64(update.reads),
                    &update.last_accessed_ms,
                ],
            )
            .await
            .map_err(map_err("record reads"))?;
        }
        tx.commit().await.map_err(map_err("commit read counts"))
    }
}

/// Deletes a record's row (`action` names why, for the error).
async fn delete_row(
    tx: &Transaction<'_>,
    (collection, key): (&str, &str),
    action: &'static str,
) -> Result<(), Failure> {
    let statement = tx
        .prepare_cached(DELETE_RECORD)
        .await
        .map_err(classify("prepare a record delete"))?;
    tx.execute(&statement, &[&collection, &key])
        .await
        .map_err(classify(action))?;
    Ok(())
}

/// Deletes a record that has expired (`plan::has_expired`), releases its reference and adds
/// its `expired` change: what a write that finds it does first, and what the sweep does to
/// each record it deletes.
pub(super) async fn expire(
    tx: &Transaction<'_>,
    (collection, key): (&str, &str),
    found: &Current<Option<BlobId>>,
    refs: &mut RefChanges<'_>,
    changes: &mut NewChanges,
) -> Result<(), Failure> {
    delete_row(tx, (collection, key), "delete an expired record").await?;
    if let Some(blob_id) = found.blob_ref {
        refs.release(blob_id);
    }
    changes.push(
        (collection, key),
        ChangeKind::Expired,
        found.meta.version,
        None,
    );
    Ok(())
}

/// The rows `range` selects now (the transaction is SERIALIZABLE, so an insert into the range
/// by a concurrent transaction also fails one of the two).
pub(super) async fn range_rows(
    tx: &Transaction<'_>,
    collection: &str,
    range: &ScanRange,
    now: i64,
) -> Result<Vec<RangeRow>, Failure> {
    let ([lowest, above, highest, below], limit) = scan_bounds(range);
    let sql = if range.reverse {
        range_sql!("DESC")
    } else {
        range_sql!("ASC")
    };
    let statement = tx
        .prepare_cached(sql)
        .await
        .map_err(classify("prepare a range check"))?;
    let rows = tx
        .query(
            &statement,
            &[&collection, &lowest, &above, &highest, &below, &limit, &now],
        )
        .await
        .map_err(classify("check a scanned range"))?;
    rows.iter()
        .map(|row| {
            let version: i64 = row.column(1)?;
            let value = BlobId::from_slice(row.column(2)?);
            Ok((row.column(0)?, Version::new(unsigned(version)), value))
        })
        .collect()
}
