//! Writes on PostgreSQL: one transaction per request, at READ COMMITTED, with row locks.
//!
//! - The record is read `FOR UPDATE`, so its version check and increment are exact while
//!   other servers write the same key; a key that did not exist is created with a plain
//!   `INSERT`, which fails with a unique violation if another server created it meanwhile.
//! - Each operation's plan comes from `backend::plan`, the rule both engines share.
//! - Reference counts change after the records, as one net delta per blob, in blob-id order
//!   (so requests sharing popular values queue instead of deadlocking): see [`super::refs`].
//! - Unique violations, deadlocks and serialization failures roll the transaction back and
//!   retry it whole (the operations are plain data), a bounded number of times.
//! - Every written key is announced with `pg_notify` inside the transaction, so other servers
//!   hear of it exactly when it commits.
//! - The changes go to the change feed last, numbered under the feed's lock (see
//!   [`super::feed`]), which is then held only until `COMMIT`.

use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

use super::PostgresBackend;
use super::convert::{Column, format, map_err, meta, to_i64, unsigned};
use super::feed::NewChanges;
use super::read::scan_bounds;
use super::refs::RefChanges;
use crate::backend::plan::{Current, Plan, Reference, has_expired, plan};
use crate::backend::range::check_range;
use crate::backend::{AccessUpdate, ScanRange, WriteOp, WriteOutcome, Writes};
use crate::blob::BlobId;
use crate::change::ChangeKind;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::record::Version;

/// Attempts of a transaction that keeps losing races before its error is returned.
const MAX_ATTEMPTS: u32 = 12;

/// A record's current row, locked until the transaction ends.
const CURRENT: &str = "
    SELECT blob_id, format, version, created_at, updated_at, size, access_count, last_accessed,
           expires_at, seal
    FROM strongbox_records WHERE collection = $1 AND key = $2 FOR UPDATE";

/// The keys and versions of a collection's records between optional bounds (`NULL`: none)
/// that have not expired at `$7`, in the order given: what a range check compares.
macro_rules! range_sql {
    ($order:literal) => {
        concat!(
            "SELECT key, version FROM strongbox_records
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

/// Replaces a record's row.
const UPDATE_RECORD: &str = "
    UPDATE strongbox_records SET blob_id = $3, format = $4, version = $5, created_at = $6,
        updated_at = $7, size = $8, access_count = $9, last_accessed = $10, expires_at = $11,
        seal = $12
    WHERE collection = $1 AND key = $2";

/// Creates a record's row.
const INSERT_RECORD: &str = "
    INSERT INTO strongbox_records (collection, key, blob_id, format, version, created_at,
        updated_at, size, access_count, last_accessed, expires_at, seal)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

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
        let mut client = self.client().await?;
        let validates_reads = ops
            .iter()
            .any(|op| matches!(op, WriteOp::Check { .. } | WriteOp::CheckRange { .. }));
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A batch that validates reads (a `transact` commit) runs SERIALIZABLE: its checks
            // then also see the inserts of concurrent transactions that would make it
            // non-serializable, which row locks alone would miss (a missing row locks nothing);
            // those fail with a serialization failure and are retried here.
            let isolation = if validates_reads {
                IsolationLevel::Serializable
            } else {
                IsolationLevel::ReadCommitted
            };
            let tx = client
                .build_transaction()
                .isolation_level(isolation)
                .start()
                .await
                .map_err(map_err("begin a write transaction"))?;
            let result = match self.apply(&tx, &ops).await {
                Ok(outcomes) => tx
                    .commit()
                    .await
                    .map(|()| outcomes)
                    .map_err(classify("commit a write transaction")),
                Err(failure) => {
                    // Dropping the transaction rolls it back; say so explicitly to free locks now.
                    let _ = tx.rollback().await;
                    Err(failure)
                }
            };
            match result {
                Ok(outcomes) => {
                    self.after_commit(&client).await;
                    return Ok(outcomes);
                }
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) if attempt >= MAX_ATTEMPTS => {
                    return Err(Error::backend(
                        "commit a write transaction after repeated races",
                        error,
                    ));
                }
                Err(Failure::Retry(_)) => {
                    let jitter = u64::from(attempt) * 3 + (self.instance_id % 7);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
            }
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

impl PostgresBackend {
    /// Executes the plan of each operation in `tx`, then the reference-count changes.
    async fn apply(
        &self,
        tx: &Transaction<'_>,
        ops: &[WriteOp],
    ) -> Result<Vec<WriteOutcome>, Failure> {
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut refs = RefChanges::default();
        let mut changes = NewChanges::new(self.is_change_feed_on);
        for op in ops {
            if let WriteOp::CheckRange {
                collection,
                range,
                seen,
            } = op
            {
                let found = range_rows(tx, collection, range, now).await?;
                check_range(collection, range.reverse, seen, &found)?;
                outcomes.push(WriteOutcome::Checked);
                continue;
            }
            let (collection, key) = op.target();
            let mut current = current(tx, collection, key).await?;
            if let Some(found) =
                current.filter(|found| has_expired(Some(found), collection, key, now))
            {
                expire(tx, (collection, key), &found, &mut refs, &mut changes).await?;
                current = None;
            }
            let deleted_version = current.as_ref().map(|current| current.meta.version);
            let outcome = match plan(op, current.as_ref(), now)? {
                Plan::Absent => WriteOutcome::Deleted(false),
                Plan::Checked => WriteOutcome::Checked,
                Plan::Delete { release } => {
                    delete_row(tx, (collection, key), "delete a record").await?;
                    if let Some(Some(blob_id)) = release {
                        refs.release(blob_id);
                    }
                    let version = deleted_version.unwrap_or(Version::FIRST);
                    changes.push((collection, key), ChangeKind::Delete, version, None);
                    WriteOutcome::Deleted(true)
                }
                Plan::Put {
                    blob,
                    format,
                    meta,
                    seal,
                    reference,
                    replaces,
                    release,
                } => {
                    write_record(tx, (collection, key), blob, format, &meta, seal, replaces)
                        .await?;
                    if reference == Reference::Add {
                        refs.add(blob, outcomes.len());
                    }
                    if let Some(Some(blob_id)) = release {
                        refs.release(blob_id);
                    }
                    changes.push(
                        (collection, key),
                        ChangeKind::Put,
                        meta.version,
                        Some(&blob.id),
                    );
                    let deduplicated = matches!(reference, Reference::Keep(_));
                    WriteOutcome::Stored { meta, deduplicated }
                }
            };
            if !matches!(outcome, WriteOutcome::Checked) {
                self.announce(tx, collection, key).await?;
            }
            outcomes.push(outcome);
        }
        // Blob rows are locked last and in id order: two requests touching the same values
        // (popular defaults) queue behind each other instead of deadlocking.
        for index in refs.apply(tx).await? {
            if let Some(WriteOutcome::Stored { deduplicated, .. }) = outcomes.get_mut(index) {
                *deduplicated = true;
            }
        }
        changes.append(tx, now).await?;
        Ok(outcomes)
    }

    /// Tells other servers, at commit, that a key changed.
    async fn announce(
        &self,
        tx: &Transaction<'_>,
        collection: &str,
        key: &str,
    ) -> Result<(), Failure> {
        if !self.notifies {
            return Ok(());
        }
        let payload =
            serde_json::json!([self.instance_id.to_string(), collection, key]).to_string();
        let statement = tx
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(classify("prepare a change notification"))?;
        tx.execute(&statement, &[&CHANGES_CHANNEL, &payload])
            .await
            .map_err(classify("announce a change"))?;
        Ok(())
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

/// The `(key, version)` rows `range` selects now (the transaction is SERIALIZABLE, so an
/// insert into the range by a concurrent transaction also fails one of the two).
async fn range_rows(
    tx: &Transaction<'_>,
    collection: &str,
    range: &ScanRange,
    now: i64,
) -> Result<Vec<(String, Version)>, Failure> {
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
            Ok((row.column(0)?, Version::new(unsigned(version))))
        })
        .collect()
}

/// Inserts a record's row (`replaces`: updates the row found).
async fn write_record(
    tx: &Transaction<'_>,
    (collection, key): (&str, &str),
    blob: &crate::blob::EncodedBlob,
    format: u8,
    meta: &crate::record::RecordMeta,
    seal: i64,
    replaces: bool,
) -> Result<(), Failure> {
    let row = if replaces {
        UPDATE_RECORD
    } else {
        INSERT_RECORD
    };
    let statement = tx
        .prepare_cached(row)
        .await
        .map_err(classify("prepare a record write"))?;
    tx.execute(
        &statement,
        &[
            &collection,
            &key,
            &blob.id.as_bytes().as_slice(),
            &i16::from(format),
            &to_i64(meta.version.get()),
            &meta.created_at_ms,
            &meta.updated_at_ms,
            &to_i64(meta.size_bytes),
            &to_i64(meta.access_count),
            &meta.last_accessed_ms,
            &meta.expires_at_ms,
            &seal,
        ],
    )
    .await
    .map_err(classify("write a record"))?;
    Ok(())
}

/// The current row of a record, locked (`FOR UPDATE`) so that its version check and increment
/// are exact while other servers write the same key. The handle on its blob is the blob's id
/// (`None` when the stored id is not 32 bytes, which only damage makes).
async fn current(
    tx: &Transaction<'_>,
    collection: &str,
    key: &str,
) -> Result<Option<Current<Option<BlobId>>>, Failure> {
    let statement = tx
        .prepare_cached(CURRENT)
        .await
        .map_err(classify("prepare a record read"))?;
    let row = tx
        .query_opt(&statement, &[&collection, &key])
        .await
        .map_err(classify("read a record's version"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let blob_id = BlobId::from_slice(row.column(0)?);
    Ok(Some(Current {
        blob_id,
        blob_ref: blob_id,
        format: format(&row, 1)?,
        meta: meta(&row, 2)?,
        seal: row.column(9)?,
    }))
}
