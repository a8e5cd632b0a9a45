//! The SQLite schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version. Migrations run in one `BEGIN IMMEDIATE`
//! transaction that re-reads the version, so several processes opening a new file at once
//! migrate it exactly once. A file of a newer version than this code knows is refused.

use rusqlite::{Connection, TransactionBehavior};

use super::convert::map_err;
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version, seal};

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Version 1. Never edit it: add a migration instead.
///
/// - `blobs`: one row per unique value, keyed by the BLAKE3 of its serialized bytes. `data` is
///   the codec tag byte followed by the payload; `raw_size` is the serialized length;
///   `refcount` equals the number of `records` rows pointing at it.
///   It is a rowid table (with a unique index on `id`): values of a kilobyte or more fit in a
///   table page, where a `WITHOUT ROWID` table would spill them to overflow pages and triple
///   the file.
/// - `records`: one row per (collection, key), `WITHOUT ROWID` (rows are small). Keys compare
///   bytewise (BINARY collation).
const V1: &str = "
CREATE TABLE blobs (
    id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    data BLOB NOT NULL,
    raw_size INTEGER NOT NULL,
    refcount INTEGER NOT NULL CHECK (refcount > 0)
);

CREATE TABLE records (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    blob_id BLOB NOT NULL,
    format INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    last_accessed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;

CREATE INDEX records_by_blob ON records (blob_id);
";

/// Version 2: records point at blobs by a small integer, compression dictionaries, and no
/// `records_by_blob` index. Rebuilds both tables from version 1.
///
/// - `blobs.ref`: an `INTEGER PRIMARY KEY` (so `VACUUM` keeps it), which `records.blob` points
///   at: 1 to 4 bytes per record instead of a 32-byte hash, and a read or a reference change
///   finds the blob in the table itself, without a lookup in the `id` index.
/// - `dictionaries`: zstd dictionaries, keyed by their zstd dictionary id (which blobs
///   compressed with them name); rows are never deleted, so every blob stays readable. The
///   newest row of a collection is the one its new values are written with; `ratio` is the
///   compressed/raw ratio it reached on held-out values when trained.
/// - `records_by_blob` cost two random page writes per overwrite and a tenth of the file, to
///   serve only the verify and orphan-sweep scans, which do as well with one pass over
///   `records`.
///
/// A version 1 record whose blob is missing (damage) keeps `blob = 0`, which no blob has, so
/// `verify` still reports it.
const V2: &str = "
CREATE TABLE blobs_v2 (
    ref INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    data BLOB NOT NULL,
    raw_size INTEGER NOT NULL,
    refcount INTEGER NOT NULL CHECK (refcount > 0)
);
INSERT INTO blobs_v2 (id, data, raw_size, refcount)
    SELECT id, data, raw_size, refcount FROM blobs ORDER BY rowid;

CREATE TABLE records_v2 (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    blob INTEGER NOT NULL,
    format INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    last_accessed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
INSERT INTO records_v2
    SELECT r.collection, r.key, coalesce(b.ref, 0), r.format, r.version, r.created_at,
           r.updated_at, r.size, r.access_count, r.last_accessed
    FROM records r LEFT JOIN blobs_v2 b ON b.id = r.blob_id;

DROP TABLE records;
DROP TABLE blobs;
ALTER TABLE blobs_v2 RENAME TO blobs;
ALTER TABLE records_v2 RENAME TO records;

CREATE TABLE dictionaries (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    ratio REAL NOT NULL
);
";

/// Version 3: reference counts apart from the values, and a smaller blob id index. Rebuilds
/// `blobs` (keeping every `ref`).
///
/// - `blob_refs`: each blob's reference count, in a table of its own. A write changes two
///   counts (the new value's and the old one's): in a table of a few bytes per row they share
///   pages, where in `blobs` each count sat on a page of values, and a group commit writes every
///   page it touches whole to the WAL. A count may reach zero: the blob stays, unreferenced,
///   until maintenance's orphan sweep removes it (or a write of the same value takes it back),
///   so that a delete or an overwrite touches no page of values either. Both halve the bytes a
///   group commit of 64 overwrites writes (on the sample data, from 194 pages to 94).
/// - `blobs_by_id` on the first 8 bytes of each id replaces the `UNIQUE` index, which held a
///   copy of every 32-byte id (a twelfth of the file on the sample data). It finds a blob as
///   fast (the query also compares the whole id) at 40% of the size. Ids stay unique because the
///   writer thread, the only one that adds blobs, looks a blob up before it inserts it, in the
///   same transaction. A query finds a blob by id with
///   `substr(id, 1, 8) = substr(?, 1, 8) AND id = ?` (SQLite uses an index on an expression
///   only where the query repeats the expression).
const V3: &str = "
CREATE TABLE blobs_v3 (
    ref INTEGER PRIMARY KEY,
    id BLOB NOT NULL CHECK (length(id) = 32),
    data BLOB NOT NULL,
    raw_size INTEGER NOT NULL
);
INSERT INTO blobs_v3 (ref, id, data, raw_size)
    SELECT ref, id, data, raw_size FROM blobs ORDER BY ref;
CREATE TABLE blob_refs (
    ref INTEGER PRIMARY KEY,
    refcount INTEGER NOT NULL CHECK (refcount >= 0)
);
INSERT INTO blob_refs (ref, refcount) SELECT ref, refcount FROM blobs ORDER BY ref;
DROP TABLE blobs;
ALTER TABLE blobs_v3 RENAME TO blobs;
CREATE INDEX blobs_by_id ON blobs (substr(id, 1, 8));
";

/// Version 4: every record carries its seal (`record::seal`: 8 bytes of a keyed BLAKE3 over
/// its collection, key, format, version, times, size and its value's id), which every read and
/// `verify` compare, so that a damaged key, version or blob reference is an error instead of
/// another record's value. Existing records are sealed as they are by [`seal_every_record`].
const V4: &str = "ALTER TABLE records ADD COLUMN seal INTEGER NOT NULL DEFAULT 0;";

/// Version 5: the change feed.
///
/// - `changes`: one row per committed put or delete, appended in the write's own savepoint.
///   `seq` is `AUTOINCREMENT`, so a number is never handed out again after its row was
///   trimmed; `kind` is `ChangeKind::code` (1 put, 2 delete, 3 expired); `at` is the commit
///   time in milliseconds since the epoch; `blob_id` the value written (a put), else `NULL`.
/// - `feed`: one row; `trimmed_through` is the highest sequence number trimmed, so that a
///   reader asking for a trimmed change is told instead of silently skipping it.
///
/// An existing store starts with an empty feed.
const V5: &str = "
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    version INTEGER NOT NULL,
    at INTEGER NOT NULL,
    blob_id BLOB
);
CREATE TABLE feed (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    trimmed_through INTEGER NOT NULL
);
INSERT INTO feed (id, trimmed_through) VALUES (0, 0);
";

/// Version 6: records that expire.
///
/// - `records.expires_at`: the instant the record expires, in milliseconds since the epoch;
///   `NULL` (every record written before) never expires. The seal covers it when set.
/// - `records_by_expiry`: a partial index of the records that expire, which the sweep reads
///   in expiry order; records that never expire cost it nothing.
const V6: &str = "
ALTER TABLE records ADD COLUMN expires_at INTEGER;
CREATE INDEX records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
";

/// Version 7: a change names its value by the blob's `ref` (a few bytes) and the first 8 bytes
/// of its id (`blob_tag`), not by the whole 32-byte id, which was a third of every change row
/// (100 → 78 bytes of pages a change on the bench's generated data).
///
/// A blob named by a change is never deleted (the orphan sweep keeps it), so its `ref` is
/// never handed to another blob while the change is held; a page of the feed reads each value's
/// whole id through the `ref`, in the same snapshot, and a `ref` whose blob's id does not start
/// with `blob_tag` (damage) is an error rather than another value. A change whose value was
/// already missing before (damage) keeps its tag and no `ref`, and reads as damaged too.
///
/// The rows keep their numbers, and `sqlite_sequence` its highest number handed out (the table
/// is rebuilt, and a dropped table's counter goes with it).
const V7: &str = "
CREATE TABLE changes_v7 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    version INTEGER NOT NULL,
    at INTEGER NOT NULL,
    blob INTEGER,
    blob_tag BLOB
);
INSERT INTO changes_v7 (seq, collection, key, kind, version, at, blob, blob_tag)
    SELECT c.seq, c.collection, c.key, c.kind, c.version, c.at, b.ref, substr(c.blob_id, 1, 8)
    FROM changes c
    LEFT JOIN blobs b ON substr(b.id, 1, 8) = substr(c.blob_id, 1, 8) AND b.id = c.blob_id
    ORDER BY c.seq;
DELETE FROM sqlite_sequence WHERE name = 'changes_v7';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'changes_v7', seq FROM sqlite_sequence WHERE name = 'changes';
DROP TABLE changes;
ALTER TABLE changes_v7 RENAME TO changes;
";

/// Brings the database to [`SCHEMA_VERSION`]. A database without any schema (version 0) is a
/// new store only when `is_new` (this process just created it); otherwise it is an empty or
/// foreign file, refused rather than taken for an empty store.
pub fn migrate(conn: &mut Connection, is_new: bool) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err("begin the schema migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(map_err("read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::InvalidConfig(format!(
            "the database has schema version {version}, newer than this Strongbox understands \
             ({SCHEMA_VERSION}); upgrade Strongbox"
        )));
    }
    if version < 1 && !is_new {
        return Err(not_a_store(&tx)?);
    }
    if version < 1 {
        tx.execute_batch(V1).map_err(map_err("create the schema"))?;
    }
    if version < 2 {
        tx.execute_batch(V2)
            .map_err(map_err("migrate the schema to version 2"))?;
    }
    if version < 3 {
        tx.execute_batch(V3)
            .map_err(map_err("migrate the schema to version 3"))?;
    }
    if version < 4 {
        tx.execute_batch(V4)
            .map_err(map_err("migrate the schema to version 4"))?;
        seal_every_record(&tx)?;
    }
    if version < 5 {
        tx.execute_batch(V5)
            .map_err(map_err("migrate the schema to version 5"))?;
    }
    if version < 6 {
        tx.execute_batch(V6)
            .map_err(map_err("migrate the schema to version 6"))?;
    }
    if version < 7 {
        tx.execute_batch(V7)
            .map_err(map_err("migrate the schema to version 7"))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(map_err("record the schema version"))?;
    }
    tx.commit().map_err(map_err("commit the schema migration"))
}

/// Checks, before anything is written, that an existing file is a Strongbox store (or one of an
/// older schema); an empty file or another program's database is refused with `Error::Corrupt`.
pub fn check_is_store(conn: &Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(map_err("read the schema version"))?;
    if version < 1 {
        return Err(not_a_store(conn)?);
    }
    Ok(())
}

/// Checks that a store opened read-only is at this code's schema version: it cannot be
/// migrated without writing.
pub fn check_is_current(conn: &Connection) -> Result<()> {
    check_is_store(conn)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(map_err("read the schema version"))?;
    match version.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Error::InvalidConfig(format!(
            "the database has schema version {version}, newer than this Strongbox \
             ({SCHEMA_VERSION}): upgrade Strongbox"
        ))),
        std::cmp::Ordering::Less => Err(Error::ReadOnly {
            action: format!(
                "upgrade the database from schema version {version} to {SCHEMA_VERSION} \
                 (open it once without read_only)"
            ),
        }),
    }
}

/// The error for a database without Strongbox's schema.
fn not_a_store(conn: &Connection) -> Result<Error> {
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(map_err("read the schema"))?;
    let what = if tables == 0 {
        "is empty (a truncated store, or a file that was never one)"
    } else {
        "is a SQLite database of another program"
    };
    Ok(Error::Corrupt {
        collection: None,
        key: None,
        detail: format!(
            "the file {what}, not a Strongbox store: restore the store from a backup, or \
             remove the file to start a new one"
        ),
    })
}

/// Seals every record as it stands (schema version 4). A record whose blob is missing keeps
/// seal 0, which no intact record has in practice, so reads and `verify` still report it.
fn seal_every_record(conn: &Connection) -> Result<()> {
    let rows = conn
        .prepare(
            "SELECT CAST(r.collection AS BLOB), CAST(r.key AS BLOB), b.id, r.format, r.version,
                    r.created_at, r.updated_at, r.size
             FROM records r JOIN blobs b ON b.ref = r.blob",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, u8>(3)?,
                        RecordMeta {
                            version: Version::new(row.get::<_, i64>(4)?.max(0).unsigned_abs()),
                            created_at_ms: row.get(5)?,
                            updated_at_ms: row.get(6)?,
                            size_bytes: row.get::<_, i64>(7)?.max(0).unsigned_abs(),
                            access_count: 0,
                            last_accessed_ms: 0,
                            expires_at_ms: None,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_err("read the records to seal"))?;
    let mut update = conn
        .prepare(
            "UPDATE records SET seal = ?3
             WHERE collection = CAST(?1 AS TEXT) AND key = CAST(?2 AS TEXT)",
        )
        .map_err(map_err("prepare sealing the records"))?;
    for (collection, key, blob_id, format, meta) in rows {
        let Some(blob_id) = BlobId::from_slice(&blob_id) else {
            continue;
        };
        let seal = seal(&collection, &key, &blob_id, format, &meta);
        update
            .execute(rusqlite::params![collection, key, seal])
            .map_err(map_err("seal a record"))?;
    }
    Ok(())
}
