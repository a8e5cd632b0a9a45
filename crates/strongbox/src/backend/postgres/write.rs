//! Writes on PostgreSQL: one transaction per request, at READ COMMITTED, with row locks.
//!
//! - The record is read `FOR UPDATE`, so its version check and increment are exact while
//!   other servers write the same key; a key that did not exist is created with a plain
//!   `INSERT`, which fails with a unique violation if another server created it meanwhile.
//! - Reference counts change after the records, as one net delta per blob, in blob-id order
//!   (so requests sharing popular values queue instead of deadlocking). A reference is added
//!   with an `INSERT ... ON CONFLICT DO UPDATE` of the count, which locks the blob row; a
//!   release decrements under the same lock and deletes the row at zero. A writer adding a reference to a blob being freed waits for that commit and
//!   then inserts the blob afresh (it has the bytes), so a blob is never freed under a
//!   reference.
//! - Unique violations, deadlocks and serialization failures roll the transaction back and
//!   retry it whole (the operations are plain data), a bounded number of times.
//! - Every written key is announced with `pg_notify` inside the transaction, so other servers
//!   hear of it exactly when it commits.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::{PostgresBackend, map_err, to_i64, unsigned};
use crate::backend::{AccessUpdate, WriteOp, WriteOutcome, check_expect};
use crate::blob::{BlobId, EncodedBlob};
use crate::error::{Error, Result};
use crate::record::{Expect, RecordMeta, Version, seal};

/// Attempts of a transaction that keeps losing races before its error is returned.
const MAX_ATTEMPTS: u32 = 12;

/// Removes one record.
const DELETE_RECORD: &str = "DELETE FROM strongbox_records WHERE collection = $1 AND key = $2";

/// The channel on which committed writes are announced.
pub const CHANGES_CHANNEL: &str = "strongbox_changes";

/// Why an attempt failed.
enum Failure {
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
fn classify(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Failure {
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

impl PostgresBackend {
    /// See `Backend::write`.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        let mut client = self.client().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = client
                .transaction()
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
                Ok(outcomes) => return Ok(outcomes),
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

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        ops: &[WriteOp],
    ) -> Result<Vec<WriteOutcome>, Failure> {
        let now = super::now_ms();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut refs = RefChanges::default();
        for op in ops {
            let (collection, key) = match op {
                WriteOp::Put {
                    collection, key, ..
                }
                | WriteOp::Delete {
                    collection, key, ..
                }
                | WriteOp::Restore {
                    collection, key, ..
                } => (collection, key),
            };
            let current = tx
                .query_opt(
                    &tx.prepare_cached(
                        "SELECT version, blob_id, created_at, access_count, last_accessed, format,
                                updated_at, size, seal
                         FROM strongbox_records WHERE collection = $1 AND key = $2 FOR UPDATE",
                    )
                    .await
                    .map_err(classify("prepare a record read"))?,
                    &[collection, key],
                )
                .await
                .map_err(classify("read a record's version"))?;
            let actual = current
                .as_ref()
                .map(|row| Version::new(unsigned(row.get(0))));
            let old_blob = match &current {
                Some(row) => Some(BlobId::from_slice(row.get::<_, &[u8]>(1)).ok_or_else(|| {
                    Error::corrupt_at(collection, key, "the record's blob id is not 32 bytes")
                })?),
                None => None,
            };
            // Only an intact record (one that matches its seal) has its reference released and
            // its version trusted by a conditional write.
            let is_intact = match (&current, old_blob) {
                (Some(row), Some(old_blob)) => {
                    let meta = RecordMeta {
                        version: Version::new(unsigned(row.get(0))),
                        created_at_ms: row.get(2),
                        updated_at_ms: row.get(6),
                        size_bytes: unsigned(row.get(7)),
                        access_count: 0,
                        last_accessed_ms: 0,
                    };
                    let format = u8::try_from(row.get::<_, i16>(5)).unwrap_or(u8::MAX);
                    seal(
                        collection.as_bytes(),
                        key.as_bytes(),
                        &old_blob,
                        format,
                        &meta,
                    ) == row.get::<_, i64>(8)
                }
                _ => true,
            };
            let old_blob = old_blob.filter(|_| is_intact);
            let expect = match op {
                WriteOp::Put { expect, .. } | WriteOp::Delete { expect, .. } => *expect,
                WriteOp::Restore { .. } => Expect::Absent,
            };
            check_expect(
                collection,
                key,
                expect,
                actual.map(|version| (version, is_intact)),
            )
            .map_err(Failure::Fatal)?;
            match op {
                WriteOp::Put { blob, format, .. } => {
                    let version = actual.map_or(Version::FIRST, Version::next);
                    let deduplicated = old_blob == Some(blob.id);
                    if !deduplicated {
                        refs.add(blob, outcomes.len());
                    }
                    let meta = RecordMeta {
                        version,
                        created_at_ms: current
                            .as_ref()
                            .filter(|_| is_intact)
                            .map_or(now, |row| row.get(2)),
                        updated_at_ms: now,
                        size_bytes: blob.raw_len,
                        access_count: current
                            .as_ref()
                            .filter(|_| is_intact)
                            .map_or(0, |row| unsigned(row.get(3))),
                        last_accessed_ms: current
                            .as_ref()
                            .filter(|_| is_intact)
                            .map_or(0, |row| row.get(4)),
                    };
                    let seal = seal(
                        collection.as_bytes(),
                        key.as_bytes(),
                        &blob.id,
                        *format,
                        &meta,
                    );
                    let format = i16::from(*format);
                    let size = to_i64(blob.raw_len);
                    let version_i64 = to_i64(version.get());
                    let blob_id = blob.id.as_bytes().as_slice();
                    if current.is_some() {
                        let statement = tx
                            .prepare_cached(
                                "UPDATE strongbox_records SET blob_id = $3, format = $4, version = $5,
                                    created_at = $6, updated_at = $7, size = $8, seal = $9
                                 WHERE collection = $1 AND key = $2",
                            )
                            .await
                            .map_err(classify("prepare a record update"))?;
                        tx.execute(
                            &statement,
                            &[
                                collection,
                                key,
                                &blob_id,
                                &format,
                                &version_i64,
                                &meta.created_at_ms,
                                &now,
                                &size,
                                &seal,
                            ],
                        )
                        .await
                        .map_err(classify("update a record"))?;
                    } else {
                        let statement = tx
                            .prepare_cached(
                                "INSERT INTO strongbox_records
                                    (collection, key, blob_id, format, version, created_at, updated_at, size, seal)
                                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
                            )
                            .await
                            .map_err(classify("prepare a record insert"))?;
                        tx.execute(
                            &statement,
                            &[
                                collection,
                                key,
                                &blob_id,
                                &format,
                                &version_i64,
                                &now,
                                &size,
                                &seal,
                            ],
                        )
                        .await
                        .map_err(classify("insert a record"))?;
                    }
                    if let Some(old_blob) = old_blob.filter(|old| *old != blob.id) {
                        refs.release(old_blob);
                    }
                    outcomes.push(WriteOutcome::Stored { meta, deduplicated });
                }
                WriteOp::Restore {
                    blob, format, meta, ..
                } => {
                    refs.add(blob, outcomes.len());
                    let deduplicated = false;
                    let meta = RecordMeta {
                        size_bytes: blob.raw_len,
                        ..*meta
                    };
                    let seal = seal(
                        collection.as_bytes(),
                        key.as_bytes(),
                        &blob.id,
                        *format,
                        &meta,
                    );
                    let statement = tx
                        .prepare_cached(
                            "INSERT INTO strongbox_records (collection, key, blob_id, format, version,
                                created_at, updated_at, size, access_count, last_accessed, seal)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        )
                        .await
                        .map_err(classify("prepare a record restore"))?;
                    tx.execute(
                        &statement,
                        &[
                            collection,
                            key,
                            &blob.id.as_bytes().as_slice(),
                            &i16::from(*format),
                            &to_i64(meta.version.get()),
                            &meta.created_at_ms,
                            &meta.updated_at_ms,
                            &to_i64(blob.raw_len),
                            &to_i64(meta.access_count),
                            &meta.last_accessed_ms,
                            &seal,
                        ],
                    )
                    .await
                    .map_err(classify("restore a record"))?;
                    outcomes.push(WriteOutcome::Stored { meta, deduplicated });
                }
                WriteOp::Delete { .. } => {
                    if current.is_none() {
                        outcomes.push(WriteOutcome::Deleted(false));
                    } else {
                        let statement = tx
                            .prepare_cached(DELETE_RECORD)
                            .await
                            .map_err(classify("prepare a record delete"))?;
                        tx.execute(&statement, &[collection, key])
                            .await
                            .map_err(classify("delete a record"))?;
                        if let Some(old_blob) = old_blob {
                            refs.release(old_blob);
                        }
                        outcomes.push(WriteOutcome::Deleted(true));
                    }
                }
            }
            self.announce(tx, collection, key).await?;
        }
        // Blob rows are locked last and in id order: two requests touching the same values
        // (popular defaults) queue behind each other instead of deadlocking.
        for index in refs.apply(tx).await? {
            if let Some(WriteOutcome::Stored { deduplicated, .. }) = outcomes.get_mut(index) {
                *deduplicated = true;
            }
        }
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

    /// See `Backend::record_access`.
    pub async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(map_err("begin recording reads"))?;
        let statement = tx
            .prepare_cached(
                "UPDATE strongbox_records SET access_count = access_count + $3,
                    last_accessed = GREATEST(last_accessed, $4)
                 WHERE collection = $1 AND key = $2",
            )
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

/// The reference-count changes of one request: net deltas per blob, applied together in
/// blob-id order by [`RefChanges::apply`] (rules 1 and 2 of `crate::blob`).
#[derive(Default)]
struct RefChanges<'a> {
    /// Per blob: the net change, the bytes to insert it with, and the outcomes that added it.
    deltas: BTreeMap<BlobId, (i64, Option<&'a EncodedBlob>, Vec<usize>)>,
}

impl<'a> RefChanges<'a> {
    /// One more reference to `blob`, added by the write whose outcome is at `outcome`.
    fn add(&mut self, blob: &'a EncodedBlob, outcome: usize) {
        let entry = self.deltas.entry(blob.id).or_insert((0, None, Vec::new()));
        entry.0 += 1;
        entry.1 = Some(blob);
        entry.2.push(outcome);
    }

    /// One reference less to `blob_id`.
    fn release(&mut self, blob_id: BlobId) {
        self.deltas
            .entry(blob_id)
            .or_insert((0, None, Vec::new()))
            .0 -= 1;
    }

    /// Applies the changes; returns the outcomes whose value already existed (deduplicated).
    async fn apply(self, tx: &Transaction<'_>) -> Result<Vec<usize>, Failure> {
        let mut deduplicated = Vec::new();
        for (blob_id, (delta, blob, outcomes)) in self.deltas {
            let id = blob_id.as_bytes().as_slice();
            match (delta.cmp(&0), blob) {
                (std::cmp::Ordering::Greater, Some(blob)) => {
                    let statement = tx
                        .prepare_cached(
                            "INSERT INTO strongbox_blobs (id, data, raw_size, refcount) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (id) DO UPDATE SET refcount = strongbox_blobs.refcount + excluded.refcount
                             RETURNING refcount",
                        )
                        .await
                        .map_err(classify("prepare a blob write"))?;
                    let refcount: i64 = tx
                        .query_one(
                            &statement,
                            &[&id, &blob.stored, &to_i64(blob.raw_len), &delta],
                        )
                        .await
                        .map_err(classify("add a blob reference"))?
                        .get(0);
                    if refcount > delta {
                        deduplicated.extend(outcomes);
                    }
                }
                (std::cmp::Ordering::Less, _) => {
                    let statement = tx
                        .prepare_cached(
                            "UPDATE strongbox_blobs SET refcount = refcount + $2 WHERE id = $1 RETURNING refcount",
                        )
                        .await
                        .map_err(classify("prepare a blob release"))?;
                    let remaining = tx
                        .query_opt(&statement, &[&id, &delta])
                        .await
                        .map_err(classify("release a blob reference"))?
                        .map(|row| row.get::<_, i64>(0));
                    if remaining.is_some_and(|remaining| remaining <= 0) {
                        let statement = tx
                            .prepare_cached(
                                "DELETE FROM strongbox_blobs WHERE id = $1 AND refcount <= 0",
                            )
                            .await
                            .map_err(classify("prepare a blob delete"))?;
                        tx.execute(&statement, &[&id])
                            .await
                            .map_err(classify("delete an unreferenced blob"))?;
                    }
                }
                // No net change (added and released in the same request), or an increase
                // without bytes, which `add` never records.
                _ => {}
            }
        }
        Ok(deduplicated)
    }
}
