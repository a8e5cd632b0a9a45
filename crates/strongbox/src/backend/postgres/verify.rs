//! The walks `verify` makes over a PostgreSQL store.

use super::{PostgresBackend, map_err, unsigned};
use crate::backend::RecordCheck;
use crate::blob::BlobId;
use crate::error::Result;
use crate::record::{RecordMeta, Version};

impl PostgresBackend {
    /// See `Backend::records_after`. PostgreSQL checks the encoding of text, so names are
    /// always UTF-8 here.
    pub async fn records_after(
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
}

fn unreadable() -> impl FnOnce(tokio_postgres::Error) -> crate::error::Error {
    map_err("read a record to verify")
}
