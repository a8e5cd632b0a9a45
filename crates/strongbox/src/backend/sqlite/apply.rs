//! What the writer does inside a request's savepoint: it reads each record's current row,
//! asks `backend::plan` what to do, and executes the plan (rules 1 and 2 of `crate::blob`).

use rusqlite::{Connection, OptionalExtension, params};

use super::convert::{map_err, meta, to_i64, unsigned};
use super::feed::append_change;
use super::read::scan_bounds;
use crate::backend::plan::{Current, Plan, Reference, has_expired, plan};
use crate::backend::range::{RangeRow, check_range};
use crate::backend::{AccessUpdate, ScanRange, WriteOp, WriteOutcome};
use crate::blob::{BlobId, EncodedBlob};
use crate::change::ChangeKind;
use crate::clock::now_ms;
use crate::error::Result;
use crate::record::Version;

/// A record's current row: what `plan` needs, with the blob's `ref`.
const CURRENT: &str = "
    SELECT b.id, r.blob, r.format, r.version, r.created_at, r.updated_at, r.size,
           r.access_count, r.last_accessed, r.expires_at, r.seal
    FROM records r LEFT JOIN blobs b ON b.ref = r.blob
    WHERE r.collection = ?1 AND r.key = ?2";

/// Up to `?2` records expired at `?1`, soonest first, with what `plan` needs: what the sweep
/// deletes (the partial index `records_by_expiry` finds them).
const EXPIRED: &str = "
    SELECT r.collection, r.key, b.id, r.blob, r.format, r.version, r.created_at, r.updated_at,
           r.size, r.access_count, r.last_accessed, r.expires_at, r.seal
    FROM records r LEFT JOIN blobs b ON b.ref = r.blob
    WHERE r.expires_at <= ?1 ORDER BY r.expires_at LIMIT ?2";

/// Writes a record, inserting or replacing its row.
const PUT_RECORD: &str = "
    INSERT INTO records (collection, key, blob, format, version, created_at, updated_at, size,
                         access_count, last_accessed, expires_at, seal)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
    ON CONFLICT (collection, key) DO UPDATE SET
        blob = excluded.blob, format = excluded.format, version = excluded.version,
        created_at = excluded.created_at, updated_at = excluded.updated_at, size = excluded.size,
        access_count = excluded.access_count, last_accessed = excluded.last_accessed,
        expires_at = excluded.expires_at, seal = excluded.seal";

/// Removes a record.
const DELETE_RECORD: &str = "DELETE FROM records WHERE collection = ?1 AND key = ?2";

/// A blob's `ref` by id; the 8-byte prefix index finds it.
const FIND_BLOB: &str =
    "SELECT ref FROM blobs WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1";

/// One more reference to a stored blob.
const ADD_REF: &str = "
    INSERT INTO blob_refs (ref, refcount) VALUES (?1, 1)
    ON CONFLICT (ref) DO UPDATE SET refcount = refcount + 1";

/// A new blob.
const INSERT_BLOB: &str =
    "INSERT INTO blobs (id, data, raw_size) VALUES (?1, ?2, ?3) RETURNING ref";

/// A new blob's first reference.
const FIRST_REF: &str = "INSERT OR REPLACE INTO blob_refs (ref, refcount) VALUES (?1, 1)";

/// One reference less (never below zero).
const RELEASE_REF: &str =
    "UPDATE blob_refs SET refcount = refcount - 1 WHERE ref = ?1 AND refcount > 0";

/// Read counts added to a record.
const ADD_ACCESS: &str = "
    UPDATE records SET access_count = access_count + ?3, last_accessed = max(last_accessed, ?4)
    WHERE collection = ?1 AND key = ?2";

/// The keys and versions of a collection's records between bounds (see
/// `read::scan_bounds`) that have not expired at `?5`, in the order given: what a range check
/// compares.
macro_rules! range_sql {
    ($order:literal) => {
        concat!(
            "SELECT r.key, r.version, b.id FROM records r LEFT JOIN blobs b ON b.ref = r.blob
             WHERE r.collection = ?1 AND r.key >= ?2 AND r.key < ?3
               AND (r.expires_at IS NULL OR r.expires_at > ?5)
             ORDER BY r.key ",
            $order,
            " LIMIT ?4"
        )
    };
}

/// Applies `ops` in order on the writer's connection (the caller holds the savepoint).
pub(super) fn apply_ops(conn: &Connection, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in &ops {
        if let WriteOp::CheckRange {
            collection,
            range,
            seen,
        } = op
        {
            let found = range_rows(conn, collection, range, now)?;
            check_range(collection, range.reverse, seen, &found)?;
            outcomes.push(WriteOutcome::Checked);
            continue;
        }
        let (collection, key) = op.target();
        let mut current = current(conn, collection, key)?;
        if let Some(found) = current.filter(|found| has_expired(Some(found), collection, key, now))
        {
            expire(conn, collection, key, &found, now)?;
            current = None;
        }
        let deleted_version = current.as_ref().map(|current| current.meta.version);
        let outcome = match plan(op, current.as_ref(), now)? {
            Plan::Absent => WriteOutcome::Deleted(false),
            Plan::Checked => WriteOutcome::Checked,
            Plan::Delete { release } => {
                conn.prepare_cached(DELETE_RECORD)
                    .and_then(|mut statement| statement.execute(params![collection, key]))
                    .map_err(map_err("delete a record"))?;
                if let Some(blob_ref) = release {
                    release_blob_ref(conn, blob_ref)?;
                }
                let version = deleted_version.unwrap_or(Version::FIRST);
                append_change(
                    conn,
                    collection,
                    key,
                    ChangeKind::Delete,
                    version,
                    now,
                    None,
                )?;
                WriteOutcome::Deleted(true)
            }
            Plan::Put {
                blob,
                format,
                meta,
                seal,
                reference,
                release,
                ..
            } => {
                let (blob_ref, deduplicated) = match reference {
                    Reference::Keep(blob_ref) => (blob_ref, true),
                    Reference::Add => add_blob_ref(conn, blob)?,
                };
                conn.prepare_cached(PUT_RECORD)
                    .and_then(|mut statement| {
                        statement.execute(params![
                            collection,
                            key,
                            blob_ref,
                            format,
                            to_i64(meta.version.get()),
                            meta.created_at_ms,
                            meta.updated_at_ms,
                            to_i64(meta.size_bytes),
                            to_i64(meta.access_count),
                            meta.last_accessed_ms,
                            meta.expires_at_ms,
                            seal
                        ])
                    })
                    .map_err(map_err("write a record"))?;
                if let Some(old_ref) = release {
                    release_blob_ref(conn, old_ref)?;
                }
                let (kind, version) = (ChangeKind::Put, meta.version);
                let value = Some((blob_ref, &blob.id));
                append_change(conn, collection, key, kind, version, now, value)?;
                WriteOutcome::Stored { meta, deduplicated }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Deletes a record that has expired (`plan::has_expired`), releases its reference and
/// appends its `expired` change: what a write that finds it does first, and what the sweep
/// does to each record it deletes.
fn expire(
    conn: &Connection,
    collection: &str,
    key: &str,
    found: &Current<i64>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(DELETE_RECORD)
        .and_then(|mut statement| statement.execute(params![collection, key]))
        .map_err(map_err("delete an expired record"))?;
    release_blob_ref(conn, found.blob_ref)?;
    let version = found.meta.version;
    append_change(
        conn,
        collection,
        key,
        ChangeKind::Expired,
        version,
        now,
        None,
    )
}

/// Deletes up to `limit` records expired at `now` (the writer's transaction is open): returns
/// how many it examined and how many it deleted. A damaged record is left for `verify`.
pub(super) fn sweep_expired(conn: &Connection, now: i64, limit: usize) -> Result<(usize, u64)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found = conn
        .prepare_cached(EXPIRED)
        .and_then(|mut statement| {
            statement
                .query_map(params![now, limit], |row| {
                    let current = Current {
                        blob_id: row
                            .get::<_, Option<Vec<u8>>>(2)?
                            .and_then(|id| BlobId::from_slice(&id)),
                        blob_ref: row.get(3)?,
                        format: row.get(4)?,
                        meta: meta(row, 5)?,
                        seal: row.get(12)?,
                    };
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, current))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_err("find expired records"))?;
    let mut deleted = 0;
    for (collection, key, current) in &found {
        if has_expired(Some(current), collection, key, now) {
            expire(conn, collection, key, current, now)?;
            deleted += 1;
        }
    }
    Ok((found.len(), deleted))
}

/// The rows `range` selects now.
fn range_rows(
    conn: &Connection,
    collection: &str,
    range: &ScanRange,
    now: i64,
) -> Result<Vec<RangeRow>> {
    let [lower, upper] = scan_bounds(range);
    let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
    let sql = if range.reverse {
        range_sql!("DESC")
    } else {
        range_sql!("ASC")
    };
    conn.prepare_cached(sql)
        .and_then(|mut statement| {
            statement
                .query_map(params![collection, lower, upper, limit, now], |row| {
                    let value = row
                        .get::<_, Option<Vec<u8>>>(2)?
                        .and_then(|id| BlobId::from_slice(&id));
                    Ok((row.get(0)?, Version::new(unsigned(row.get(1)?)), value))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_err("check a scanned range"))
}

/// The current row of a record, if it exists; the handle on its blob is the blob's `ref`.
fn current(conn: &Connection, collection: &str, key: &str) -> Result<Option<Current<i64>>> {
    conn.prepare_cached(CURRENT)
        .and_then(|mut statement| {
            statement
                .query_row(params![collection, key], |row| {
                    Ok(Current {
                        blob_id: row
                            .get::<_, Option<Vec<u8>>>(0)?
                            .and_then(|id| BlobId::from_slice(&id)),
                        blob_ref: row.get(1)?,
                        format: row.get(2)?,
                        meta: meta(row, 3)?,
                        seal: row.get(10)?,
                    })
                })
                .optional()
        })
        .map_err(map_err("read a record's version"))
}

/// Rule 1 of `crate::blob`: one more reference, inserting the blob if it is new (or taking
/// back an unreferenced one). Returns the blob's `ref` and whether it was already stored (the
/// write was deduplicated).
fn add_blob_ref(conn: &Connection, blob: &EncodedBlob) -> Result<(i64, bool)> {
    // This thread is the only one that adds blobs, so the lookup and the insert cannot race.
    let existing: Option<i64> = conn
        .prepare_cached(FIND_BLOB)
        .and_then(|mut statement| {
            statement
                .query_row([blob.id.as_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(map_err("look up a blob"))?;
    if let Some(blob_ref) = existing {
        conn.prepare_cached(ADD_REF)
            .and_then(|mut statement| statement.execute([blob_ref]))
            .map_err(map_err("add a blob reference"))?;
        return Ok((blob_ref, true));
    }
    let blob_ref: i64 = conn
        .prepare_cached(INSERT_BLOB)
        .and_then(|mut statement| {
            statement.query_row(
                params![blob.id.as_bytes(), blob.stored, to_i64(blob.raw_len)],
                |row| row.get(0),
            )
        })
        .map_err(map_err("add a blob"))?;
    conn.prepare_cached(FIRST_REF)
        .and_then(|mut statement| statement.execute([blob_ref]))
        .map_err(map_err("count a new blob's reference"))?;
    Ok((blob_ref, false))
}

/// Rule 2 of `crate::blob`: one reference less. A blob left with none stays, unreferenced,
/// until the orphan sweep (schema version 3 says why).
fn release_blob_ref(conn: &Connection, blob_ref: i64) -> Result<()> {
    conn.prepare_cached(RELEASE_REF)
        .and_then(|mut statement| statement.execute([blob_ref]))
        .map_err(map_err("release a blob reference"))?;
    Ok(())
}

/// Adds read counts to the records read (records deleted meanwhile are skipped).
pub(super) fn apply_access(conn: &Connection, updates: &[AccessUpdate]) -> Result<()> {
    let mut statement = conn
        .prepare_cached(ADD_ACCESS)
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
