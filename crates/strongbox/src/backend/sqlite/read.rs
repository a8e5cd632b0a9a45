//! Point reads and listings ([`Reads`]) on the reader pool; a point read runs on the caller's
//! task when a connection is free.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::convert::{blob_id_at, map_err, meta, unsigned};
use crate::backend::{KeyRange, Reads, ScanRange, StorageTotals, StoredRecord};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::record::Version;

/// Records, collections and their values' serialized size; records that expire after `?1`
/// and those expired at `?1`.
const RECORD_TOTALS: &str = "
    SELECT count(*), count(DISTINCT collection), coalesce(sum(size), 0),
           count(*) FILTER (WHERE expires_at > ?1), count(*) FILTER (WHERE expires_at <= ?1)
    FROM records";

/// Blobs in use, their raw and stored sizes, and the stored size of those waiting for the sweep
/// (left at zero references), counted apart.
const BLOB_TOTALS: &str = "
    SELECT count(*) FILTER (WHERE c.refcount > 0),
           coalesce(sum(b.raw_size) FILTER (WHERE c.refcount > 0), 0),
           coalesce(sum(length(b.data)) FILTER (WHERE c.refcount > 0), 0),
           coalesce(sum(length(b.data)) FILTER (WHERE coalesce(c.refcount, 0) = 0), 0)
    FROM blobs b LEFT JOIN blob_refs c ON c.ref = b.ref";

/// Keys of a collection after a cursor.
const LIST_KEYS: &str = "
    SELECT key FROM records
    WHERE collection = ?1 AND key > ?2 AND (expires_at IS NULL OR expires_at > ?4)
    ORDER BY key LIMIT ?3";

/// Keys of a collection from `?2` (the greater of the prefix and the key after the cursor)
/// up to `?3`, the prefix's end: one bound a side, so that SQLite seeks to the cursor instead
/// of walking the prefix up to it.
const LIST_PREFIXED_KEYS: &str = "
    SELECT key FROM records
    WHERE collection = ?1 AND key >= ?2 AND key < ?3 AND (expires_at IS NULL OR expires_at > ?5)
    ORDER BY key LIMIT ?4";

/// Records of a collection between bounds (see [`scan_bounds`]) that have not expired at `?5`,
/// with their blobs, in the order given (`ASC` or `DESC`). One bound a side: with two lower bounds SQLite seeks with one
/// and walks the rest, so each page of a scan would start again from the range's beginning.
macro_rules! scan_sql {
    ($order:literal) => {
        concat!(
            "SELECT r.key, b.id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
                    r.access_count, r.last_accessed, r.expires_at, r.seal
             FROM records r LEFT JOIN blobs b ON b.ref = r.blob
             WHERE r.collection = ?1 AND r.key >= ?2 AND r.key < ?3
               AND (r.expires_at IS NULL OR r.expires_at > ?5)
             ORDER BY r.key ",
            $order,
            " LIMIT ?4"
        )
    };
}

/// A scan up.
const SCAN_UP: &str = scan_sql!("ASC");

/// A scan down.
const SCAN_DOWN: &str = scan_sql!("DESC");

impl Reads for SqliteBackend {
    async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        if self.inline_reads
            && let Some(result) = self
                .readers
                .try_read_inline(|conn| get_blocking(conn, collection, key))
        {
            return result;
        }
        let (collection, key) = (collection.to_owned(), key.to_owned());
        self.readers
            .read(move |conn| get_blocking(conn, &collection, &key))
            .await
    }

    async fn get_many(
        &self,
        collection: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                // One read transaction: every record from the same commit.
                conn.execute_batch("BEGIN")
                    .map_err(map_err("begin a read"))?;
                let records = keys
                    .iter()
                    .map(|key| get_blocking(conn, &collection, key))
                    .collect::<Result<Vec<_>>>();
                conn.execute_batch("COMMIT")
                    .map_err(map_err("end a read"))?;
                records
            })
            .await
    }

    async fn scan(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                let [lower, upper] = scan_bounds(&range);
                let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
                let sql = if range.reverse { SCAN_DOWN } else { SCAN_UP };
                let now = now_ms();
                let rows = conn
                    .prepare_cached(sql)
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![collection, lower, upper, limit, now], |row| {
                                Ok((row.get::<_, String>(0)?, record_columns(row, 1)?))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("scan records"))?;
                rows.into_iter()
                    .map(|(key, columns)| {
                        let record = stored_record(&collection, &key, columns)?;
                        Ok((key, record))
                    })
                    .collect()
            })
            .await
    }

    async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        let (collection, key) = (collection.to_owned(), key.to_owned());
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT version FROM records WHERE collection = ?1 AND key = ?2
                     AND (expires_at IS NULL OR expires_at > ?3)",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![collection, key, now_ms()], |row| {
                            row.get::<_, i64>(0)
                        })
                        .optional()
                })
                .map(|version| version.map(|v| Version::new(unsigned(v))))
                .map_err(map_err("read a record's version"))
            })
            .await
    }

    async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                // An empty key is invalid, so "after the empty key" means from the first key.
                let start_after = range.start_after.unwrap_or_default();
                let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
                let now = now_ms();
                let keys = match range.prefix.filter(|prefix| !prefix.is_empty()) {
                    None => conn.prepare_cached(LIST_KEYS).and_then(|mut statement| {
                        statement
                            .query_map(params![collection, start_after, limit, now], |row| {
                                row.get(0)
                            })?
                            .collect::<rusqlite::Result<Vec<String>>>()
                    }),
                    Some(prefix) => {
                        let upper = prefix_upper_bound(&prefix);
                        let lower = just_after(&start_after).max(prefix);
                        conn.prepare_cached(LIST_PREFIXED_KEYS)
                            .and_then(|mut statement| {
                                let upper = rusqlite::types::ToSqlOutput::Borrowed(
                                    rusqlite::types::ValueRef::Text(&upper),
                                );
                                statement
                                    .query_map(
                                        params![collection, lower, upper, limit, now],
                                        |row| row.get(0),
                                    )?
                                    .collect::<rusqlite::Result<Vec<String>>>()
                            })
                    }
                };
                keys.map_err(map_err("list keys"))
            })
            .await
    }

    async fn count(&self, collection: &str) -> Result<u64> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT count(*) FROM records WHERE collection = ?1
                     AND (expires_at IS NULL OR expires_at > ?2)",
                )
                .and_then(|mut statement| {
                    statement.query_row(params![collection, now_ms()], |row| row.get::<_, i64>(0))
                })
                .map(unsigned)
                .map_err(map_err("count records"))
            })
            .await
    }

    async fn collections(&self) -> Result<Vec<String>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT DISTINCT collection FROM records
                     WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY collection",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map([now_ms()], |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(map_err("list collections"))
            })
            .await
    }

    async fn totals(&self) -> Result<StorageTotals> {
        self.readers
            .read(|conn| {
                // One read transaction, so both queries see the same commit.
                conn.execute_batch("BEGIN")
                    .map_err(map_err("begin a read"))?;
                let totals = (|| {
                    let (records, collections, logical_bytes, expiring, expired) =
                        conn.query_row(RECORD_TOTALS, [now_ms()], |row| {
                            Ok((
                                row.get::<_, i64>(0)?,
                                row.get(1)?,
                                row.get(2)?,
                                row.get::<_, i64>(3)?,
                                row.get::<_, i64>(4)?,
                            ))
                        })?;
                    // Blobs left at zero references wait for the sweep: counted apart.
                    let (blobs, unique_bytes, stored_bytes, released_bytes) =
                        conn.query_row(BLOB_TOTALS, [], |row| {
                            Ok((
                                row.get::<_, i64>(0)?,
                                row.get::<_, i64>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, i64>(3)?,
                            ))
                        })?;
                    Ok(StorageTotals {
                        records: unsigned(records),
                        expiring: unsigned(expiring),
                        expired: unsigned(expired),
                        collections: unsigned(collections),
                        blobs: unsigned(blobs),
                        logical_bytes: unsigned(logical_bytes),
                        unique_bytes: unsigned(unique_bytes),
                        stored_bytes: unsigned(stored_bytes),
                        released_bytes: unsigned(released_bytes),
                    })
                })()
                .map_err(map_err("sum up the database"));
                conn.execute_batch("COMMIT")
                    .map_err(map_err("end a read"))?;
                totals
            })
            .await
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
///
/// UTF-8 never contains 0xFF, so incrementing the last byte cannot overflow; the result need
/// not be valid UTF-8, which SQLite's bytewise comparison does not mind.
fn prefix_upper_bound(prefix: &str) -> Vec<u8> {
    let mut upper = prefix.as_bytes().to_vec();
    if let Some(last) = upper.last_mut() {
        *last = last.saturating_add(1);
    }
    upper
}

/// The bounds of `SCAN_UP`/`SCAN_DOWN` (`key >= ?2 AND key < ?3`) for a range. No key holds a
/// NUL byte, so the first key after `k` is `k` followed by NUL: "after k" is `>= k\0` and "up
/// to k" is `< k\0`. An absent lower bound is the empty string (no key is empty), an absent
/// upper bound a blob, which SQLite orders after every text.
pub(super) fn scan_bounds(range: &ScanRange) -> [rusqlite::types::Value; 2] {
    use rusqlite::types::Value;
    use std::ops::Bound;
    let lower = match &range.start {
        Bound::Included(key) => key.clone(),
        Bound::Excluded(key) => just_after(key),
        Bound::Unbounded => String::new(),
    };
    let upper = match &range.end {
        Bound::Included(key) => Value::Text(just_after(key)),
        Bound::Excluded(key) => Value::Text(key.clone()),
        Bound::Unbounded => Value::Blob(vec![0xFF]),
    };
    [Value::Text(lower), upper]
}

/// The first string after `key` in byte order: `key` and a NUL byte (which no key holds).
fn just_after(key: &str) -> String {
    let mut after = String::with_capacity(key.len() + 1);
    after.push_str(key);
    after.push('\0');
    after
}

/// The columns of a record and its blob from `first` on: blob id, stored bytes, format, the
/// seven metadata columns, seal.
type RecordColumns = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    u8,
    crate::record::RecordMeta,
    i64,
);

fn record_columns(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RecordColumns> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        meta(row, first + 3)?,
        row.get(first + 10)?,
    ))
}

/// A fetched record; a record without its blob row is damage.
fn stored_record(collection: &str, key: &str, columns: RecordColumns) -> Result<StoredRecord> {
    let (blob_id, stored, format, meta, seal) = columns;
    let blob_id = blob_id
        .ok_or_else(|| Error::corrupt_at(collection, key, "the record's value is missing"))?;
    Ok(StoredRecord {
        blob_id: blob_id_at(collection, key, &blob_id)?,
        stored,
        format,
        meta,
        seal,
    })
}

/// One record and its blob, by key.
pub(super) fn get_blocking(
    conn: &Connection,
    collection: &str,
    key: &str,
) -> Result<Option<StoredRecord>> {
    conn.prepare_cached(
        "SELECT b.id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
                r.access_count, r.last_accessed, r.expires_at, r.seal
         FROM records r LEFT JOIN blobs b ON b.ref = r.blob
         WHERE r.collection = ?1 AND r.key = ?2",
    )
    .and_then(|mut statement| {
        statement
            .query_row(params![collection, key], |row| record_columns(row, 0))
            .optional()
    })
    .map_err(map_err("read a record"))?
    .map(|columns| stored_record(collection, key, columns))
    .transpose()
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use rusqlite::{Connection, StatementStatus, params};

    use super::super::schema::migrate;
    use super::{SCAN_DOWN, SCAN_UP, scan_bounds};
    use crate::backend::ScanRange;

    /// 10,000 records, `k00000` to `k09999`, in collection `c`.
    const FILL: &str = "
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
        INSERT INTO records (collection, key, blob, format, version, created_at, updated_at, size)
        SELECT 'c', printf('k%05d', i), 1, 0, 1, 0, 0, 0 FROM n";

    /// A page of a scan after a cursor starts at the cursor, upwards and downwards. With two
    /// lower bounds on the key (the range's start and the cursor), SQLite walked the index
    /// from the range's start and filtered up to the cursor, so each page read every key
    /// before it and a scan of a million keys took minutes instead of seconds.
    #[test]
    fn a_scan_page_reads_from_its_cursor() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn, true)?;
        conn.execute_batch(FILL)?;
        let up = ScanRange {
            start: Bound::Excluded("k09000".to_owned()),
            end: Bound::Unbounded,
            reverse: false,
            limit: 10,
        };
        let down = ScanRange {
            start: Bound::Included("k00000".to_owned()),
            end: Bound::Excluded("k01000".to_owned()),
            reverse: true,
            limit: 10,
        };
        for (range, first) in [(up, "k09001"), (down, "k00999")] {
            let [lower, upper] = scan_bounds(&range);
            let sql = if range.reverse { SCAN_DOWN } else { SCAN_UP };
            let mut statement = conn.prepare(sql)?;
            let keys = statement
                .query_map(params!["c", lower, upper, 10, 0], |row| {
                    row.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            assert_eq!((keys.len(), keys[0].as_str()), (10, first), "{range:?}");
            // Ten rows take some hundreds of steps; walking the 9,000 keys on the far side of
            // the cursor would take tens of thousands.
            let steps = statement.get_status(StatementStatus::VmStep);
            println!("{steps} steps for a page of {range:?}");
            assert!(steps < 2_000, "{steps} steps for a page of {range:?}");
        }
        Ok(())
    }
}
