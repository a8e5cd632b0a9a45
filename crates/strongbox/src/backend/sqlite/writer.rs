//! The single writer: a dedicated thread that owns the read-write connection and commits
//! queued requests together (group commit).
//!
//! Each request is applied inside its own `SAVEPOINT`, so a request that fails (a conflict, a
//! bad row) is rolled back alone and its neighbours still commit. The whole group then commits
//! once, with one fsync, and only after that does any successful caller get its answer: a
//! returned write is durable. A lone writer never waits for a batch to fill; when the last
//! group held several requests (callers write concurrently), the writer waits up to
//! [`GATHER`] for as many to arrive before committing, so one fsync serves them all.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{map_err, now_ms};
use crate::backend::{AccessUpdate, WriteOp, WriteOutcome, check_expect};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::{Expect, RecordMeta, Version, seal};

/// The longest a group waits for more concurrent requests before it commits.
const GATHER: Duration = Duration::from_micros(500);

/// A message to the writer thread.
pub enum Request {
    /// Apply these operations atomically and answer once they are durable.
    Write {
        /// The operations, in order.
        ops: Vec<WriteOp>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Vec<WriteOutcome>>>,
    },
    /// Run a job on the writer connection, alone, between two group commits (maintenance).
    /// The job answers through its own channel.
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Add read counts; answered once committed, if anyone waits for the answer.
    Access {
        /// The counts.
        updates: Vec<AccessUpdate>,
        /// Where the outcome goes.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

/// Runs the writer until every sender is dropped.
pub fn run(mut conn: Connection, requests: mpsc::Receiver<Request>, max_batch_requests: usize) {
    let mut next = None;
    // Size of the last group: more than one means callers are writing concurrently.
    let mut previous_group = 1;
    loop {
        let first = match next.take() {
            Some(request) => request,
            None => match requests.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        if let Request::Exclusive(job) = first {
            job(&mut conn);
            continue;
        }
        let mut group = vec![first];
        // Under concurrency, callers answered by the last commit are still encoding their next
        // write: wait a moment (never longer than GATHER, and only until as many requests as
        // last time are here) so that one fsync serves them all. A lone writer never waits.
        let deadline = Instant::now() + GATHER;
        let expected = previous_group.min(max_batch_requests);
        while group.len() < max_batch_requests {
            let received = if previous_group > 1 && group.len() < expected {
                requests
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()
            } else {
                requests.try_recv().ok()
            };
            match received {
                // An exclusive job waits for the group before it to commit.
                Some(request @ Request::Exclusive(_)) => {
                    next = Some(request);
                    break;
                }
                Some(request) => group.push(request),
                None => break,
            }
        }
        previous_group = group.len();
        commit_group(&mut conn, group);
    }
}

/// An answer held back until the group's commit.
enum Pending {
    Write(
        oneshot::Sender<Result<Vec<WriteOutcome>>>,
        Vec<WriteOutcome>,
    ),
    Access(Option<oneshot::Sender<Result<()>>>),
}

fn commit_group(conn: &mut Connection, group: Vec<Request>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = map_err("begin a write transaction")(error);
            for request in group {
                answer_error(request, &error);
            }
            return;
        }
    };
    let mut pending = Vec::with_capacity(group.len());
    for request in group {
        match request {
            Request::Write { ops, reply } => match in_savepoint(&tx, |conn| apply_ops(conn, ops)) {
                Ok(outcomes) => pending.push(Pending::Write(reply, outcomes)),
                // Rolled back to its savepoint: nothing of it will commit, so it can be told now.
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Request::Access { updates, reply } => {
                match in_savepoint(&tx, |conn| apply_access(conn, &updates)) {
                    Ok(()) => pending.push(Pending::Access(reply)),
                    Err(error) => answer_access(reply, Err(error)),
                }
            }
            // `run` never puts an exclusive job into a group; were one here, dropping it
            // tells its caller the store is closed rather than running it inside a transaction.
            Request::Exclusive(job) => drop(job),
        }
    }
    match tx.commit() {
        Ok(()) => {
            for answer in pending {
                match answer {
                    Pending::Write(reply, outcomes) => {
                        let _ = reply.send(Ok(outcomes));
                    }
                    Pending::Access(reply) => answer_access(reply, Ok(())),
                }
            }
        }
        Err(error) => {
            // The transaction is rolled back when `commit` fails; nobody's write happened.
            let error = map_err("commit a write transaction")(error);
            for answer in pending {
                match answer {
                    Pending::Write(reply, _) => {
                        let _ = reply.send(Err(error.duplicate()));
                    }
                    Pending::Access(reply) => answer_access(reply, Err(error.duplicate())),
                }
            }
        }
    }
}

fn answer_error(request: Request, error: &Error) {
    match request {
        Request::Write { reply, .. } => {
            let _ = reply.send(Err(error.duplicate()));
        }
        Request::Access { reply, .. } => answer_access(reply, Err(error.duplicate())),
        Request::Exclusive(job) => drop(job),
    }
}

/// Answers an access update; one nobody waits for is only logged when it failed, since read
/// counts are statistics and losing a batch of them loses no data.
fn answer_access(reply: Option<oneshot::Sender<Result<()>>>, result: Result<()>) {
    match reply {
        Some(reply) => {
            let _ = reply.send(result);
        }
        None => {
            if let Err(error) = result {
                tracing::warn!(%error, "could not record read counts");
            }
        }
    }
}

/// Runs `body` inside a savepoint, rolling back to it on error.
fn in_savepoint<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT request")
        .map_err(map_err("open a savepoint"))?;
    match body(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE request")
                .map_err(map_err("release a savepoint"))?;
            Ok(value)
        }
        Err(error) => {
            // If even the rollback fails, the outer transaction is in an unknown state; the
            // error of the rollback then fails the commit of the whole group.
            if let Err(rollback_error) = conn.execute_batch("ROLLBACK TO request; RELEASE request")
            {
                tracing::error!(error = %rollback_error, "cannot roll back a failed write request");
            }
            Err(error)
        }
    }
}

fn apply_ops(conn: &Connection, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match op {
            WriteOp::Put {
                collection,
                key,
                blob,
                format,
                expect,
            } => {
                let current = current(conn, &collection, &key)?;
                let actual = current.as_ref().map(|row| row.version);
                check_expect(&collection, &key, expect, current.as_ref().map(CurrentRow::state))?;
                let version = actual.map_or(Version::FIRST, Version::next);
                // Only an intact record's reference is trusted: a damaged one's is neither
                // reused nor released (its count stays, for `verify` to report).
                let intact = current.as_ref().filter(|row| row.is_intact);
                let old_blob = intact.map(|row| (row.blob_id, row.blob_ref));
                let (blob_ref, deduplicated) = match old_blob {
                    Some((old_id, old_ref)) if old_id == Some(blob.id) => (old_ref, true),
                    _ => add_blob_ref(conn, &blob.id, &blob.stored, blob.raw_len)?,
                };
                let meta = RecordMeta {
                    version,
                    created_at_ms: intact.map_or(now, |row| row.created_at_ms),
                    updated_at_ms: now,
                    size_bytes: blob.raw_len,
                    access_count: intact.map_or(0, |row| row.access_count),
                    last_accessed_ms: intact.map_or(0, |row| row.last_accessed_ms),
                };
                let seal = seal(collection.as_bytes(), key.as_bytes(), &blob.id, format, &meta);
                conn.prepare_cached(
                    "INSERT INTO records (collection, key, blob, format, version, created_at, updated_at, size, seal)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (collection, key) DO UPDATE SET
                        blob = excluded.blob, format = excluded.format, version = excluded.version,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        size = excluded.size, seal = excluded.seal",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        collection,
                        key,
                        blob_ref,
                        format,
                        to_i64(version.get()),
                        meta.created_at_ms,
                        now,
                        to_i64(blob.raw_len),
                        seal
                    ])
                })
                .map_err(map_err("write a record"))?;
                let replaced = old_blob.filter(|(old_id, _)| *old_id != Some(blob.id));
                if let Some((_, old_ref)) = replaced {
                    release_blob_ref(conn, old_ref)?;
                }
                WriteOutcome::Stored { meta, deduplicated }
            }
            WriteOp::Restore {
                collection,
                key,
                blob,
                format,
                meta,
            } => {
                let current = current(conn, &collection, &key)?;
                check_expect(&collection, &key, Expect::Absent, current.as_ref().map(CurrentRow::state))?;
                let (blob_ref, deduplicated) = add_blob_ref(conn, &blob.id, &blob.stored, blob.raw_len)?;
                let meta = RecordMeta {
                    size_bytes: blob.raw_len,
                    ..meta
                };
                let seal = seal(collection.as_bytes(), key.as_bytes(), &blob.id, format, &meta);
                conn.prepare_cached(
                    "INSERT INTO records (collection, key, blob, format, version, created_at, updated_at,
                        size, access_count, last_accessed, seal)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        collection,
                        key,
                        blob_ref,
                        format,
                        to_i64(meta.version.get()),
                        meta.created_at_ms,
                        meta.updated_at_ms,
                        to_i64(blob.raw_len),
                        to_i64(meta.access_count),
                        meta.last_accessed_ms,
                        seal
                    ])
                })
                .map_err(map_err("restore a record"))?;
                WriteOutcome::Stored { meta, deduplicated }
            }
            WriteOp::Delete {
                collection,
                key,
                expect,
            } => {
                let current = current(conn, &collection, &key)?;
                check_expect(&collection, &key, expect, current.as_ref().map(CurrentRow::state))?;
                match current {
                    None => WriteOutcome::Deleted(false),
                    Some(row) => {
                        conn.prepare_cached("DELETE FROM records WHERE collection = ?1 AND key = ?2")
                            .and_then(|mut statement| statement.execute(params![collection, key]))
                            .map_err(map_err("delete a record"))?;
                        if row.is_intact {
                            release_blob_ref(conn, row.blob_ref)?;
                        }
                        WriteOutcome::Deleted(true)
                    }
                }
            }
        });
    }
    Ok(outcomes)
}

/// What a write needs to know of the record it replaces.
struct CurrentRow {
    version: Version,
    /// The id of the blob the record points at; `None` when that blob is missing.
    blob_id: Option<BlobId>,
    /// `blobs.ref` of that blob.
    blob_ref: i64,
    created_at_ms: i64,
    access_count: u64,
    last_accessed_ms: i64,
    /// Whether the record matches its seal (and its blob exists): only then are its reference
    /// and metadata trusted.
    is_intact: bool,
}

impl CurrentRow {
    /// What `check_expect` needs: the version, and whether it can be trusted.
    fn state(&self) -> (Version, bool) {
        (self.version, self.is_intact)
    }
}

/// The current state of a record, if it exists.
fn current(conn: &Connection, collection: &str, key: &str) -> Result<Option<CurrentRow>> {
    let row = conn
        .prepare_cached(
            "SELECT r.version, b.id, r.created_at, r.access_count, r.last_accessed, r.blob,
                    r.format, r.updated_at, r.size, r.seal
             FROM records r LEFT JOIN blobs b ON b.ref = r.blob
             WHERE r.collection = ?1 AND r.key = ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![collection, key], |row| {
                    Ok((
                        (
                            row.get::<_, i64>(0)?,
                            row.get::<_, Option<Vec<u8>>>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, i64>(3)?,
                            row.get::<_, i64>(4)?,
                        ),
                        (
                            row.get::<_, i64>(5)?,
                            row.get::<_, u8>(6)?,
                            row.get::<_, i64>(7)?,
                            row.get::<_, i64>(8)?,
                            row.get::<_, i64>(9)?,
                        ),
                    ))
                })
                .optional()
        })
        .map_err(map_err("read a record's version"))?;
    Ok(row.map(
        |(
            (version, blob_id, created_at_ms, access_count, last_accessed_ms),
            (blob_ref, format, updated_at_ms, size, stored_seal),
        )| {
            let blob_id = blob_id.and_then(|id| BlobId::from_slice(&id));
            let meta = RecordMeta {
                version: Version::new(version.max(0).unsigned_abs()),
                created_at_ms,
                updated_at_ms,
                size_bytes: size.max(0).unsigned_abs(),
                access_count: access_count.max(0).unsigned_abs(),
                last_accessed_ms,
            };
            let is_intact = blob_id.is_some_and(|id| {
                seal(collection.as_bytes(), key.as_bytes(), &id, format, &meta) == stored_seal
            });
            CurrentRow {
                version: meta.version,
                blob_id,
                blob_ref,
                created_at_ms,
                access_count: meta.access_count,
                last_accessed_ms,
                is_intact,
            }
        },
    ))
}

/// Rule 1 of `crate::blob`: one more reference, inserting the blob if it is new (or taking
/// back an unreferenced one). Returns the blob's `ref` and whether it was already stored (the
/// write was deduplicated).
fn add_blob_ref(
    conn: &Connection,
    blob_id: &BlobId,
    stored: &[u8],
    raw_len: u64,
) -> Result<(i64, bool)> {
    // This thread is the only one that adds blobs, so the lookup and the insert cannot race.
    let existing: Option<i64> = conn
        .prepare_cached(
            "SELECT ref FROM blobs WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([blob_id.as_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(map_err("look up a blob"))?;
    if let Some(blob_ref) = existing {
        conn.prepare_cached(
            "INSERT INTO blob_refs (ref, refcount) VALUES (?1, 1)
             ON CONFLICT (ref) DO UPDATE SET refcount = refcount + 1",
        )
        .and_then(|mut statement| statement.execute([blob_ref]))
        .map_err(map_err("add a blob reference"))?;
        return Ok((blob_ref, true));
    }
    let blob_ref: i64 = conn
        .prepare_cached(
            "INSERT INTO blobs (id, data, raw_size) VALUES (?1, ?2, ?3)
             RETURNING ref",
        )
        .and_then(|mut statement| {
            statement.query_row(
                params![blob_id.as_bytes(), stored, to_i64(raw_len)],
                |row| row.get(0),
            )
        })
        .map_err(map_err("add a blob"))?;
    conn.prepare_cached("INSERT OR REPLACE INTO blob_refs (ref, refcount) VALUES (?1, 1)")
        .and_then(|mut statement| statement.execute([blob_ref]))
        .map_err(map_err("count a new blob's reference"))?;
    Ok((blob_ref, false))
}

/// Rule 2 of `crate::blob`: one reference less. A blob left with none stays, unreferenced,
/// until the orphan sweep (schema version 3 says why).
fn release_blob_ref(conn: &Connection, blob_ref: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE blob_refs SET refcount = refcount - 1 WHERE ref = ?1 AND refcount > 0",
    )
    .and_then(|mut statement| statement.execute([blob_ref]))
    .map_err(map_err("release a blob reference"))?;
    Ok(())
}

fn apply_access(conn: &Connection, updates: &[AccessUpdate]) -> Result<()> {
    let mut statement = conn
        .prepare_cached(
            "UPDATE records SET access_count = access_count + ?3, last_accessed = max(last_accessed, ?4)
             WHERE collection = ?1 AND key = ?2",
        )
        .map_err(map_err("prepare the access update"))?;
    for update in updates {
        statement
            .execute(params![
                update.collection,
                update.key,
                to_i64(update.reads),
                update.last_accessed_ms
            ])
            .map_err(map_err("record reads"))?;
    }
    Ok(())
}

/// SQLite integers are signed; counts and versions never reach 2^63.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
