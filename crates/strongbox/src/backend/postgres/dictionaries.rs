//! Compression dictionaries on PostgreSQL: the `strongbox_dictionaries` table, and the reads
//! and rewrites that recompress a collection's values with a new dictionary.

use super::PostgresBackend;
use super::convert::{Column, map_err, unsigned};
use crate::backend::{DictionaryStorage, StoredDictionary, dictionary_clash};
use crate::blob::BlobId;
use crate::error::Result;

impl DictionaryStorage for PostgresBackend {
    async fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, collection, data, created_at, ratio FROM strongbox_dictionaries
                 ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(map_err("read the compression dictionaries"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredDictionary {
                    id: u32::try_from(row.column::<i64>(0)?).unwrap_or(0),
                    collection: row.column(1)?,
                    bytes: row.column(2)?,
                    created_at_ms: row.column(3)?,
                    ratio: row.column(4)?,
                })
            })
            .collect()
    }

    async fn add_dictionary(&self, dictionary: StoredDictionary) -> Result<bool> {
        let client = self.client().await?;
        let id = i64::from(dictionary.id);
        let inserted = client
            .execute(
                "INSERT INTO strongbox_dictionaries (id, collection, data, created_at, ratio)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    &dictionary.collection,
                    &dictionary.bytes,
                    &dictionary.created_at_ms,
                    &dictionary.ratio,
                ],
            )
            .await
            .map_err(map_err("add a dictionary"))?;
        if inserted == 1 {
            return Ok(true);
        }
        let row = client
            .query_one(
                "SELECT data FROM strongbox_dictionaries WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(map_err("look up a dictionary"))?;
        if row.column::<&[u8]>(0)? == dictionary.bytes.as_slice() {
            Ok(false)
        } else {
            Err(dictionary_clash(dictionary.id))
        }
    }

    async fn collection_sizes(&self) -> Result<Vec<(String, u64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT collection, count(*) FROM strongbox_records GROUP BY collection
                 ORDER BY collection",
                &[],
            )
            .await
            .map_err(map_err("count the collections' records"))?;
        rows.iter()
            .map(|row| Ok((row.column(0)?, unsigned(row.column(1)?))))
            .collect()
    }

    async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>> {
        let client = self.client().await?;
        let sql = if newest {
            "SELECT b.id, b.data FROM strongbox_records r JOIN strongbox_blobs b ON b.id = r.blob_id
             WHERE r.collection = $1 ORDER BY r.updated_at DESC LIMIT $2"
        } else {
            "SELECT b.id, b.data FROM strongbox_records r JOIN strongbox_blobs b ON b.id = r.blob_id
             WHERE r.collection = $1 ORDER BY random() LIMIT $2"
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(sql, &[&collection, &limit])
            .await
            .map_err(map_err("sample a collection's values"))?;
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = BlobId::from_slice(row.column(0)?) {
                values.push((id, row.column(1)?));
            }
        }
        Ok(values)
    }

    async fn values_after(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, BlobId, Vec<u8>)>> {
        let client = self.client().await?;
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT r.key, b.id, b.data
                 FROM strongbox_records r JOIN strongbox_blobs b ON b.id = r.blob_id
                 WHERE r.collection = $1 AND r.key > $2 ORDER BY r.key LIMIT $3",
                &[&collection, &after, &limit],
            )
            .await
            .map_err(map_err("read a collection's values"))?;
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = BlobId::from_slice(row.column(1)?) {
                values.push((row.column(0)?, id, row.column(2)?));
            }
        }
        Ok(values)
    }

    /// Each row is updated on its own: replacing one encoding of a value with another needs no
    /// atomicity across blobs.
    async fn rewrite_blobs(&self, blobs: Vec<(BlobId, Vec<u8>)>) -> Result<u64> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("UPDATE strongbox_blobs SET data = $2 WHERE id = $1")
            .await
            .map_err(map_err("prepare recompression"))?;
        let mut rewritten = 0;
        for (id, stored) in &blobs {
            rewritten += client
                .execute(&statement, &[&id.as_bytes().as_slice(), stored])
                .await
                .map_err(map_err("recompress a value"))?;
        }
        Ok(rewritten)
    }
}
