//! Compression dictionaries on PostgreSQL: the `strongbox_dictionaries` table, and the reads
//! and rewrites that recompress a collection's values with a new dictionary.

use super::PostgresBackend;
use super::convert::{Column, map_err, unsigned};
use crate::backend::{DictionaryStorage, StoredDictionary, dictionary_clash};
use crate::blob::BlobId;
use crate::error::Result;

/// Changes the newest-values sample looks back over.
const NEWEST_WINDOW: i64 = 100_000;

/// Rows a block sample aims at, per value asked for: rows of other collections share the
/// blocks, and a collection's rows cluster, so it asks for plenty.
const SAMPLED_ROWS: f32 = 4.0;

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

    /// The newest values come from the change feed's last [`NEWEST_WINDOW`] changes (a walk
    /// back along its primary key), else a random sample; a random sample picks record rows
    /// first — from a block sample of about four times as many rows as asked when the table is
    /// large ([`SAMPLED_ROWS`]), else from the collection's rows — and reads only their values,
    /// never every value of the collection.
    async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        if newest {
            rows = client
                .query(
                    "SELECT b.id, b.data FROM strongbox_changes c
                     JOIN strongbox_blobs b ON b.id = c.blob_id
                     WHERE c.seq > (SELECT coalesce(max(seq), 0) FROM strongbox_changes) - $3
                       AND c.collection = $1 AND c.kind = 1
                     ORDER BY c.seq DESC LIMIT $2",
                    &[&collection, &limit, &NEWEST_WINDOW],
                )
                .await
                .map_err(map_err("sample a collection's newest values"))?;
        }
        if rows.len() < usize::try_from(limit / 2).unwrap_or(usize::MAX) {
            let estimated: f32 = client
                .query_one(
                    "SELECT greatest(reltuples, 1)::float4 FROM pg_class
                     WHERE oid = 'strongbox_records'::regclass",
                    &[],
                )
                .await
                .map_err(map_err("estimate the records' count"))?
                .column(0)?;
            #[allow(clippy::cast_precision_loss)] // a percentage: precision does not matter
            let percent = (SAMPLED_ROWS * limit as f32 / estimated * 100.0).clamp(0.0001, 100.0);
            if percent < 100.0 {
                rows = client
                    .query(
                        "SELECT b.id, b.data FROM (
                             SELECT blob_id FROM strongbox_records TABLESAMPLE SYSTEM ($3)
                             WHERE collection = $1 LIMIT $2) r
                         JOIN strongbox_blobs b ON b.id = r.blob_id",
                        &[&collection, &limit, &percent],
                    )
                    .await
                    .map_err(map_err("sample a collection's values"))?;
            }
        }
        if rows.len() < usize::try_from(limit / 2).unwrap_or(usize::MAX) {
            rows = client
                .query(
                    "SELECT b.id, b.data FROM (
                         SELECT blob_id FROM strongbox_records WHERE collection = $1
                         ORDER BY random() LIMIT $2) r
                     JOIN strongbox_blobs b ON b.id = r.blob_id",
                    &[&collection, &limit],
                )
                .await
                .map_err(map_err("sample a collection's values"))?;
        }
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
