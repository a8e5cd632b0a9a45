//! The walks and counts `verify` checks a PostgreSQL store with ([`Checks`]).

use super::PostgresBackend;
use super::convert::{map_err, unsigned};
use crate::backend::types::Position;
use crate::backend::{BlobCursor, Checks, RecordCheck, RefcountMismatch};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version};

/// Blobs whose stored count differs from the number of records pointing at them.
const REFCOUNT_MISMATCHES: &str = "
    SELECT b.id, b.refcount, coalesce(r.actual, 0)
    FROM strongbox_blobs b
    LEFT JOIN (SELECT blob_id, count(*) AS actual FROM strongbox_records GROUP BY blob_id) r
      ON r.blob_id = b.id
    WHERE b.refcount <> coalesce(r.actual, 0)";

/// The records pointing at a blob.
const RECORDS_OF_BLOB: &str = "
    SELECT collection, key FROM strongbox_records WHERE blob_id = $1
    ORDER BY collection, key LIMIT $2";

impl Checks for PostgresBackend {
    /// PostgreSQL checks the encoding of text, so names are
    /// always UTF-8 here.
    async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        let (collection, key) = after.unwrap_or_default();
        let collection = String::from_utf8_lossy(&collection).into_owned();
        let key = String::from_utf8_lossy(&key).into_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.collection, r.key, r.blob_id, r.format, r.version, r.created_at,
                        r.updated_at, r.size, r.seal, b.id IS NOT NULL
                 FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
                 WHERE (r.collection, r.key) > ($1, $2)
                 ORDER BY r.collection, r.key LIMIT $3",
                &[&collection, &key, &limit],
            )
            .await
            .map_err(map_err("read records to verify"))?;
        rows.into_iter()
            .map(|row| {
                let collection: String = row.try_get(0).map_err(unreadable())?;
                let key: String = row.try_get(1).map_err(unreadable())?;
                let blob_id: Vec<u8> = row.try_get(2).map_err(unreadable())?;
                let format: i16 = row.try_get(3).map_err(unreadable())?;
                let number =
                    |index: usize| -> Result<i64> { row.try_get(index).map_err(unreadable()) };
                let has_blob: bool = row.try_get(9).map_err(unreadable())?;
                Ok(RecordCheck {
                    collection: collection.into_bytes(),
                    key: key.into_bytes(),
                    blob_id: BlobId::from_slice(&blob_id).filter(|_| has_blob),
                    format: u8::try_from(format).unwrap_or(u8::MAX),
                    meta: RecordMeta {
                        version: Version::new(unsigned(number(4)?)),
                        created_at_ms: number(5)?,
                        updated_at_ms: number(6)?,
                        size_bytes: unsigned(number(7)?),
                        access_count: 0,
                        last_accessed_ms: 0,
                    },
                    seal: number(8)?,
                })
            })
            .collect()
    }

    /// In id order.
    async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        let cursor = after;
        let after = match after.0 {
            Position::Start => Vec::new(),
            Position::Id(id) => id.as_bytes().to_vec(),
            Position::Ref(_) => {
                return Err(Error::backend(
                    "read blobs",
                    "a SQLite cursor was given to a PostgreSQL database",
                ));
            }
        };
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT id, data FROM strongbox_blobs WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(map_err("read blobs"))?;
        let blobs = rows
            .into_iter()
            .map(|row| {
                let id: &[u8] = row.get(0);
                let blob_id = BlobId::from_slice(id).ok_or_else(|| Error::Corrupt {
                    collection: None,
                    key: None,
                    detail: format!("a blob id is {} bytes long instead of 32", id.len()),
                })?;
                Ok((blob_id, row.get(1)))
            })
            .collect::<Result<Vec<_>>>()?;
        let next = blobs
            .last()
            .map_or(cursor, |(id, _)| BlobCursor(Position::Id(*id)));
        Ok((blobs, next))
    }

    async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(RECORDS_OF_BLOB, &[&blob_id.as_bytes().as_slice(), &limit])
            .await
            .map_err(map_err("find the records of a blob"))?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        let client = self.client().await?;
        let rows = client
            .query(REFCOUNT_MISMATCHES, &[])
            .await
            .map_err(map_err("recount blob references"))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                BlobId::from_slice(row.get::<_, &[u8]>(0)).map(|blob_id| RefcountMismatch {
                    blob_id,
                    recorded: row.get(1),
                    actual: row.get(2),
                })
            })
            .collect())
    }

    async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT collection, key FROM strongbox_records r
                 WHERE NOT EXISTS (SELECT 1 FROM strongbox_blobs b WHERE b.id = r.blob_id)
                 ORDER BY collection, key",
                &[],
            )
            .await
            .map_err(map_err("find records without a blob"))?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// Without the `amcheck` extension PostgreSQL has no
    /// page check to run; `Store::verify`'s hash and reference checks still cover the data.
    async fn integrity_check(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        client
            .batch_execute("SELECT 1")
            .await
            .map_err(map_err("reach the database"))?;
        Ok(Vec::new())
    }
}

fn unreadable() -> impl FnOnce(tokio_postgres::Error) -> crate::error::Error {
    map_err("read a record to verify")
}
