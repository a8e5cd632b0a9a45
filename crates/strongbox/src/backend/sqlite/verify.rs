//! The walks `verify` makes over a SQLite store.

use rusqlite::params;

use super::{SqliteBackend, map_err};
use crate::backend::RecordCheck;
use crate::blob::BlobId;
use crate::error::Result;
use crate::record::{RecordMeta, Version};

impl SqliteBackend {
    /// See `Backend::records_after`. Names are read as bytes (`CAST(... AS BLOB)`) and the
    /// cursor is compared as text, so a damaged, non-UTF-8 key neither stops the walk nor
    /// moves it.
    pub async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        self.readers
            .read(move |conn| {
                let (collection, key) = after.unwrap_or_default();
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                conn.prepare_cached(
                    "SELECT CAST(r.collection AS BLOB), CAST(r.key AS BLOB), b.id, r.format,
                            r.version, r.created_at, r.updated_at, r.size, r.seal
                     FROM records r LEFT JOIN blobs b ON b.ref = r.blob
                     WHERE (r.collection, r.key) > (CAST(?1 AS TEXT), CAST(?2 AS TEXT))
                     ORDER BY r.collection, r.key LIMIT ?3",
                )
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
                                meta: RecordMeta {
                                    version: Version::new(
                                        row.get::<_, i64>(4)?.max(0).unsigned_abs(),
                                    ),
                                    created_at_ms: row.get(5)?,
                                    updated_at_ms: row.get(6)?,
                                    size_bytes: row.get::<_, i64>(7)?.max(0).unsigned_abs(),
                                    access_count: 0,
                                    last_accessed_ms: 0,
                                },
                                seal: row.get(8)?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("read records to verify"))
            })
            .await
    }
}
