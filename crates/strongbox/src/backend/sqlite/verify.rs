//! The walks and counts `verify` checks a SQLite store with ([`Checks`]).

use rusqlite::params;

use super::SqliteBackend;
use super::convert::{map_err, meta};
use crate::backend::types::Position;
use crate::backend::{BlobCursor, Checks, Measurement, RecordCheck, RefcountMismatch};
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// Records after a `(collection, key)` cursor, names as bytes, with what their seal covers.
const RECORDS_AFTER: &str = "
    SELECT CAST(r.collection AS BLOB), CAST(r.key AS BLOB), b.id, r.format,
           r.version, r.created_at, r.updated_at, r.size, r.access_count, r.last_accessed,
           r.expires_at, r.seal
    FROM records r LEFT JOIN blobs b ON b.ref = r.blob
    WHERE (r.collection, r.key) > (CAST(?1 AS TEXT), CAST(?2 AS TEXT))
    ORDER BY r.collection, r.key LIMIT ?3";

/// Blobs whose stored count differs from the number of records pointing at them.
const REFCOUNT_MISMATCHES: &str = "
    WITH counted AS (SELECT blob, count(*) AS actual FROM records GROUP BY blob)
    SELECT b.id, coalesce(r.refcount, 0), coalesce(c.actual, 0)
    FROM blobs b LEFT JOIN blob_refs r ON r.ref = b.ref
         LEFT JOIN counted c ON c.blob = b.ref
    WHERE coalesce(r.refcount, 0) != coalesce(c.actual, 0)";

impl Checks for SqliteBackend {
    /// Names are read as bytes (`CAST(... AS BLOB)`) and the cursor is compared as text, so a
    /// damaged, non-UTF-8 key neither stops the walk nor moves it.
    async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        self.readers
            .read(move |conn| {
                let (collection, key) = after.unwrap_or_default();
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                conn.prepare_cached(RECORDS_AFTER)
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![collection, key, limit], |row| {
                                Ok(RecordCheck {
                                    collection: row.get(0)?,
                                    key: row.get(1)?,
                                    blob_id: row
                                        .get::<_, Option<Vec<u8>>>(2)?
                                        .and_then(|id| BlobId::from_slice(&id)),
                                    format: row.get(3)?,
                                    meta: meta(row, 4)?,
                                    seal: row.get(11)?,
                                })
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("read records to verify"))
            })
            .await
    }

    async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        let after = match after.0 {
            Position::Start => 0,
            Position::Ref(blob_ref) => blob_ref,
            #[cfg(feature = "postgres")]
            Position::Id(_) => {
                return Err(Error::backend(
                    "read blobs",
                    "a PostgreSQL cursor was given to a SQLite database",
                ));
            }
        };
        self.readers
            .read(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = conn
                    .prepare_cached(
                        "SELECT ref, id, data FROM blobs WHERE ref > ?1 ORDER BY ref LIMIT ?2",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![after, limit], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, Vec<u8>>(1)?,
                                    row.get(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<(i64, Vec<u8>, Vec<u8>)>>>()
                    })
                    .map_err(map_err("read blobs"))?;
                let next = rows.last().map_or(after, |(blob_ref, _, _)| *blob_ref);
                let next = BlobCursor(Position::Ref(next));
                let blobs = rows
                    .into_iter()
                    .map(|(_, id, data)| {
                        let id = BlobId::from_slice(&id).ok_or_else(|| Error::Corrupt {
                            collection: None,
                            key: None,
                            detail: format!("a blob id is {} bytes long instead of 32", id.len()),
                        })?;
                        Ok((id, data))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((blobs, next))
            })
            .await
    }

    async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        self.readers
            .read(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                conn.prepare_cached(
                    "SELECT collection, key FROM records
                     WHERE blob = (SELECT ref FROM blobs
                                   WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1)
                     ORDER BY collection, key LIMIT ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map(params![blob_id.as_bytes(), limit], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("find the records of a blob"))
            })
            .await
    }

    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        self.readers
            .read(|conn| {
                let rows = conn
                    .prepare_cached(REFCOUNT_MISMATCHES)
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| {
                                Ok((
                                    row.get::<_, Vec<u8>>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, i64>(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("recount blob references"))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, recorded, actual)| {
                        BlobId::from_slice(&id).map(|blob_id| RefcountMismatch {
                            blob_id,
                            recorded,
                            actual,
                        })
                    })
                    .collect())
            })
            .await
    }

    async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT collection, key FROM records r
                     WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.ref = r.blob)
                     ORDER BY collection, key",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("find records without a blob"))
            })
            .await
    }

    async fn integrity_check(&self) -> Result<Measurement<Vec<String>>> {
        self.readers
            .read(|conn| {
                let lines = conn
                    .prepare("PRAGMA integrity_check")
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| row.get::<_, String>(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("run the integrity check"))?;
                Ok(Measurement::Measured(
                    lines.into_iter().filter(|line| line != "ok").collect(),
                ))
            })
            .await
    }
}
