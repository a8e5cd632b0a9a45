//! The change feed on SQLite ([`Feed`]): the `changes` table, appended to by the writer inside
//! each request's savepoint, read on the reader pool, trimmed on the writer connection.
//!
//! Sequence numbers come from `AUTOINCREMENT`: one writer at a time (the file's write lock)
//! commits, so numbers grow in commit order, and `sqlite_sequence` never hands out a number
//! again once it committed, even after the rows holding it were trimmed.

use std::cell::Cell;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SqliteBackend;
use super::convert::{map_err, to_i64, unsigned};
use super::read::get_blocking;
use crate::backend::{ChangedRecords, Feed, FeedPage, FeedTrim};
use crate::blob::BlobId;
use crate::change::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::record::Version;

/// Appends one change; `seq` is the next number. A put names its value by the blob's `ref` and
/// the first 8 bytes of its id (schema version 7).
const APPEND: &str = "
    INSERT INTO changes (collection, key, kind, version, at, blob, blob_tag)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Changes after a sequence number, ascending, each put with its value's whole id (read through
/// its `ref` in the same snapshot).
const AFTER: &str = "
    SELECT c.seq, c.collection, c.key, c.kind, c.version, c.at, c.blob_tag, b.id
    FROM changes c LEFT JOIN blobs b ON b.ref = c.blob
    WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2";

/// A collection's changes after a sequence number, ascending, as [`AFTER`].
const AFTER_IN_COLLECTION: &str = "
    SELECT c.seq, c.collection, c.key, c.kind, c.version, c.at, c.blob_tag, b.id
    FROM changes c LEFT JOIN blobs b ON b.ref = c.blob
    WHERE c.seq > ?1 AND c.collection = ?3 ORDER BY c.seq LIMIT ?2";

/// Where the feed stands: trimmed through, oldest held, newest committed.
pub(super) const BOUNDS: &str = "
    SELECT f.trimmed_through, (SELECT min(seq) FROM changes),
           max(f.trimmed_through, coalesce((SELECT max(seq) FROM changes), 0),
               coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0))
    FROM feed f WHERE f.id = 0";

/// The highest sequence number committed before a time.
const LAST_BEFORE: &str = "SELECT max(seq) FROM changes WHERE at < ?1";

/// The newest sequence number held.
const NEWEST: &str = "SELECT max(seq) FROM changes";

/// Deletes the changes up to a sequence number.
const TRIM: &str = "DELETE FROM changes WHERE seq <= ?1";

/// Records how far the feed was trimmed.
const RECORD_TRIM: &str = "UPDATE feed SET trimmed_through = max(trimmed_through, ?1) WHERE id = 0";

/// Bytes of a value's id a change keeps beside the blob's `ref`, to check that the `ref` still
/// names that value.
const TAG_BYTES: usize = 8;

/// The stored bytes of a blob, found by its id (the index holds the id's first 8 bytes).
const BLOB: &str = "SELECT data FROM blobs WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1";

thread_local! {
    /// Whether the writer running on this thread appends changes (`Config::change_feed`), set
    /// once as its thread starts ([`record_changes_on_this_thread`]). A writer owns its thread
    /// and is the only caller of [`append_change`]; any other thread records every change.
    static IS_RECORDING: Cell<bool> = const { Cell::new(true) };
}

/// Tells [`append_change`] whether the writer on the calling thread records changes: its
/// store's `Config::change_feed`. Called first thing on the writer's own thread.
pub(super) fn record_changes_on_this_thread(is_on: bool) {
    IS_RECORDING.set(is_on);
}

/// Appends the change a write made, inside the writer's savepoint (so a request that fails
/// leaves none); nothing when the store's change feed is off.
pub(super) fn append_change(
    conn: &Connection,
    collection: &str,
    key: &str,
    kind: ChangeKind,
    version: Version,
    at_ms: i64,
    blob: Option<(i64, &BlobId)>,
) -> Result<()> {
    if !IS_RECORDING.get() {
        return Ok(());
    }
    conn.prepare_cached(APPEND)
        .and_then(|mut statement| {
            statement.execute(params![
                collection,
                key,
                kind.code(),
                to_i64(version.get()),
                at_ms,
                blob.map(|(blob_ref, _)| blob_ref),
                blob.map(|(_, id)| &id.as_bytes()[..TAG_BYTES])
            ])
        })
        .map_err(map_err("record a change"))?;
    Ok(())
}

impl Feed for SqliteBackend {
    async fn changes_after(
        &self,
        since: u64,
        limit: usize,
        collection: Option<&str>,
    ) -> Result<FeedPage> {
        let collection = collection.map(str::to_owned);
        self.readers
            .read(move |conn| {
                // One read transaction: the page and the bounds from the same commit.
                conn.execute_batch("BEGIN")
                    .map_err(map_err("begin a read"))?;
                let page = read_page(conn, since, limit, collection.as_deref());
                conn.execute_batch("COMMIT")
                    .map_err(map_err("end a read"))?;
                page
            })
            .await
    }

    async fn changes_with_records(&self, since: u64, limit: usize) -> Result<ChangedRecords> {
        self.readers
            .read(move |conn| {
                // One read transaction: the page and the records from the same commit.
                conn.execute_batch("BEGIN")
                    .map_err(map_err("begin a read"))?;
                let read = read_page(conn, since, limit, None).and_then(|page| {
                    let records = page
                        .changed_keys()
                        .into_iter()
                        .map(|(collection, key)| {
                            let record = get_blocking(conn, &collection, &key)?;
                            Ok(((collection, key), record))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(ChangedRecords { page, records })
                });
                conn.execute_batch("COMMIT")
                    .map_err(map_err("end a read"))?;
                read
            })
            .await
    }

    async fn trim_changes(&self, trim: FeedTrim) -> Result<u64> {
        self.exclusive(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err("begin trimming the change feed"))?;
            let by_count: Option<i64> = match trim.keep_count {
                None => None,
                Some(keep) => tx
                    .query_row(NEWEST, [], |row| row.get::<_, Option<i64>>(0))
                    .map_err(map_err("read the newest change"))?
                    .map(|newest| newest.saturating_sub(to_i64(keep))),
            };
            let by_age: Option<i64> = match trim.older_than_ms {
                None => None,
                Some(before) => tx
                    .query_row(LAST_BEFORE, [before], |row| row.get(0))
                    .map_err(map_err("find the changes to trim"))?,
            };
            let Some(through) = by_count.max(by_age).filter(|through| *through > 0) else {
                return Ok(0);
            };
            let deleted = tx
                .execute(TRIM, [through])
                .map_err(map_err("trim the change feed"))?;
            tx.execute(RECORD_TRIM, [through])
                .map_err(map_err("record the trim"))?;
            tx.commit()
                .map_err(map_err("commit the trim of the change feed"))?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn blob(&self, blob_id: BlobId) -> Result<Option<Vec<u8>>> {
        self.readers
            .read(move |conn| {
                conn.prepare_cached(BLOB)
                    .and_then(|mut statement| {
                        statement
                            .query_row([blob_id.as_bytes().as_slice()], |row| row.get(0))
                            .optional()
                    })
                    .map_err(map_err("read the value of a change"))
            })
            .await
    }
}

/// A page of changes and the bounds, inside the caller's read transaction.
fn read_page(
    conn: &Connection,
    since: u64,
    limit: usize,
    collection: Option<&str>,
) -> Result<FeedPage> {
    let limit = to_i64(u64::try_from(limit).unwrap_or(u64::MAX));
    let since = to_i64(since);
    let rows = match collection {
        None => conn.prepare_cached(AFTER).and_then(|mut statement| {
            statement
                .query_map(params![since, limit], columns)?
                .collect::<rusqlite::Result<Vec<_>>>()
        }),
        Some(collection) => conn
            .prepare_cached(AFTER_IN_COLLECTION)
            .and_then(|mut statement| {
                statement
                    .query_map(params![since, limit, collection], columns)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    }
    .map_err(map_err("read the change feed"))?;
    let changes = rows.into_iter().map(change).collect::<Result<Vec<_>>>()?;
    let (trimmed_through, oldest, newest) = conn
        .prepare_cached(BOUNDS)
        .and_then(|mut statement| {
            statement.query_row([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
        })
        .map_err(map_err("read the change feed's bounds"))?;
    Ok(FeedPage {
        changes,
        trimmed_through: unsigned(trimmed_through),
        oldest: oldest.map(unsigned),
        newest: unsigned(newest),
    })
}

/// A change's columns as stored, and its value's id as its `ref` found it.
type Columns = (
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

fn columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<Columns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

/// A change from its stored columns. An unknown kind is damage, and so is a value that its
/// `ref` does not find, or finds under an id that does not begin with the change's tag.
fn change((seq, collection, key, kind, version, at_ms, tag, found): Columns) -> Result<Change> {
    let damaged = |detail: &str| Error::Corrupt {
        collection: Some(collection.clone()),
        key: Some(key.clone()),
        detail: format!("change {seq} of the feed {detail}"),
    };
    let kind = ChangeKind::from_code(kind).ok_or_else(|| damaged("has an unknown kind"))?;
    let blob_id = match (tag, found) {
        (None, _) => None,
        (Some(_), None) => return Err(damaged("names a value the store does not hold")),
        (Some(tag), Some(id)) => Some(
            BlobId::from_slice(&id)
                .filter(|id| id.as_bytes().get(..TAG_BYTES) == Some(tag.as_slice()))
                .ok_or_else(|| damaged("names a value whose id does not match it"))?,
        ),
    };
    Ok(Change {
        seq: unsigned(seq),
        kind,
        version: Version::new(unsigned(version)),
        at_ms,
        blob_id,
        collection,
        key,
    })
}
