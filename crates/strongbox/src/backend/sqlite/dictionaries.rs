//! Compression dictionaries on SQLite: the `dictionaries` table, and the reads and rewrites
//! that recompress a collection's values with a new dictionary.

use rusqlite::{OptionalExtension, params};

use super::SqliteBackend;
use super::convert::{map_err, unsigned};
use crate::backend::{DictionaryStorage, StoredDictionary, dictionary_clash};
use crate::blob::BlobId;
use crate::error::Result;

/// Every collection with its number of records.
const COLLECTION_SIZES: &str =
    "SELECT collection, count(*) FROM records GROUP BY collection ORDER BY collection";

impl DictionaryStorage for SqliteBackend {
    async fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT id, collection, data, created_at, ratio FROM dictionaries
                     ORDER BY created_at, id",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map([], |row| {
                            Ok(StoredDictionary {
                                id: u32::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                                collection: row.get(1)?,
                                bytes: row.get(2)?,
                                created_at_ms: row.get(3)?,
                                ratio: row.get(4)?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("read the compression dictionaries"))
            })
            .await
    }

    async fn add_dictionary(&self, dictionary: StoredDictionary) -> Result<bool> {
        self.exclusive(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err("begin adding a dictionary"))?;
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT data FROM dictionaries WHERE id = ?1",
                    [i64::from(dictionary.id)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(map_err("look up a dictionary"))?;
            let added = match existing {
                Some(bytes) if bytes == dictionary.bytes => false,
                Some(_) => return Err(dictionary_clash(dictionary.id)),
                None => {
                    tx.execute(
                        "INSERT INTO dictionaries (id, collection, data, created_at, ratio)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            i64::from(dictionary.id),
                            dictionary.collection,
                            dictionary.bytes,
                            dictionary.created_at_ms,
                            dictionary.ratio
                        ],
                    )
                    .map_err(map_err("add a dictionary"))?;
                    true
                }
            };
            tx.commit().map_err(map_err("commit a dictionary"))?;
            Ok(added)
        })
        .await
    }

    async fn collection_sizes(&self) -> Result<Vec<(String, u64)>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(COLLECTION_SIZES)
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| Ok((row.get(0)?, unsigned(row.get(1)?))))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("count the collections' records"))
            })
            .await
    }

    async fn sample_values(
        &self,
        collection: &str,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<(BlobId, Vec<u8>)>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                let sql = if newest {
                    "SELECT b.id, b.data FROM records r JOIN blobs b ON b.ref = r.blob
                     WHERE r.collection = ?1 ORDER BY r.updated_at DESC LIMIT ?2"
                } else {
                    "SELECT b.id, b.data FROM records r JOIN blobs b ON b.ref = r.blob
                     WHERE r.collection = ?1 ORDER BY random() LIMIT ?2"
                };
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = conn
                    .prepare_cached(sql)
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![collection, limit], |row| {
                                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("sample a collection's values"))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, data)| BlobId::from_slice(&id).map(|id| (id, data)))
                    .collect())
            })
            .await
    }

    async fn values_after(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, BlobId, Vec<u8>)>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                let after = after.unwrap_or_default();
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = conn
                    .prepare_cached(
                        "SELECT r.key, b.id, b.data FROM records r JOIN blobs b ON b.ref = r.blob
                         WHERE r.collection = ?1 AND r.key > ?2 ORDER BY r.key LIMIT ?3",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![collection, after, limit], |row| {
                                Ok((
                                    row.get::<_, String>(0)?,
                                    row.get::<_, Vec<u8>>(1)?,
                                    row.get::<_, Vec<u8>>(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("read a collection's values"))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(key, id, data)| BlobId::from_slice(&id).map(|id| (key, id, data)))
                    .collect())
            })
            .await
    }

    async fn rewrite_blobs(&self, blobs: Vec<(BlobId, Vec<u8>)>) -> Result<u64> {
        self.exclusive(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err("begin recompressing values"))?;
            let mut rewritten = 0;
            {
                let mut statement = tx
                    .prepare_cached(
                        "UPDATE blobs SET data = ?2
                         WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1",
                    )
                    .map_err(map_err("recompress a value"))?;
                for (id, stored) in &blobs {
                    rewritten += statement
                        .execute(params![id.as_bytes(), stored])
                        .map_err(map_err("recompress a value"))?
                        as u64;
                }
            }
            tx.commit().map_err(map_err("commit recompressed values"))?;
            Ok(rewritten)
        })
        .await
    }
}
