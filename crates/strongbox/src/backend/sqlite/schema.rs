//! The SQLite schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version. Migrations run in one `BEGIN IMMEDIATE`
//! transaction that re-reads the version, so several processes opening a new file at once
//! migrate it exactly once. A file of a newer version than this code knows is refused.

use rusqlite::{Connection, TransactionBehavior};

use super::map_err;
use crate::error::{Error, Result};

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

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

/// Brings the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<()> {
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
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(map_err("record the schema version"))?;
    }
    tx.commit().map_err(map_err("commit the schema migration"))
}
