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
                let mut rows = if newest {
                    newest_puts(conn, &collection, limit)
                } else {
                    Ok(Vec::new())
                }
                .map_err(map_err("sample a collection's newest values"))?;
                // A collection the feed saw little of lately: its values at random instead.
                if rows.len() < limit / 2 {
                    rows = probe_sample(conn, &collection, limit)
                        .map_err(map_err("sample a collection's values"))?;
                }
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

/// Changes the newest-values sample looks back over.
const NEWEST_WINDOW: i64 = 100_000;

/// The values of the newest puts into `collection` among the feed's last [`NEWEST_WINDOW`]
/// changes, newest first: `(id, stored bytes)`. A walk back along the feed's primary key, never
/// a scan of the collection.
fn newest_puts(
    conn: &rusqlite::Connection,
    collection: &str,
    limit: usize,
) -> rusqlite::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let newest: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |row| {
        row.get(0)
    })?;
    let mut statement = conn.prepare_cached(
        "SELECT b.id, b.data FROM changes c
         JOIN blobs b ON b.ref = c.blob AND substr(b.id, 1, 8) = c.blob_tag
         WHERE c.seq > ?3 AND c.collection = ?1 AND c.kind = 1
         ORDER BY c.seq DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    statement
        .query_map(
            params![collection, limit, newest.saturating_sub(NEWEST_WINDOW)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect()
}

/// Up to `limit` distinct records of `collection`, `(id, stored bytes)`, found by probing
/// random keys between its first and last key: each probe is one index seek, so a sample costs
/// about `limit` seeks whatever the collection's size (where `ORDER BY random()` read every
/// value). Keys spread unevenly over that span are sampled unevenly; any probe finds a real
/// record, which is all training needs.
fn probe_sample(
    conn: &rusqlite::Connection,
    collection: &str,
    limit: usize,
) -> rusqlite::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let edge = |sql: &str| {
        conn.query_row(sql, [collection], |row| row.get::<_, String>(0))
            .optional()
    };
    let first = edge("SELECT key FROM records WHERE collection = ?1 ORDER BY key LIMIT 1")?;
    let last = edge("SELECT key FROM records WHERE collection = ?1 ORDER BY key DESC LIMIT 1")?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(
        "SELECT r.key, b.id, b.data FROM records r JOIN blobs b ON b.ref = r.blob
         WHERE r.collection = ?1 AND r.key >= ?2 ORDER BY r.key LIMIT 1",
    )?;
    let state = std::hash::RandomState::new();
    let mut drawn = 0u64;
    let mut random = || {
        drawn += 1;
        std::hash::BuildHasher::hash_one(&state, drawn)
    };
    let mut seen = std::collections::HashSet::new();
    let mut sample = Vec::with_capacity(limit);
    for _ in 0..limit.saturating_mul(2) {
        if sample.len() >= limit {
            break;
        }
        let key = key_between(&first, &last, &mut random);
        let found = statement
            .query_row(params![collection, key], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        if let Some((key, id, data)) = found
            && seen.insert(key)
        {
            sample.push((id, data));
        }
    }
    Ok(sample)
}

/// Bytes of a probe key drawn after the common prefix of the collection's first and last key.
const PROBE_BYTES: usize = 16;

/// A probe key from `first` to `last` (byte order), drawn with `random`: their common prefix,
/// then a byte between theirs where they first differ, then bytes from the range the two keys'
/// remaining bytes span (digits for numbered keys, say), so that probes spread over the keys
/// the collection can hold rather than over every byte string between the two.
fn key_between(first: &str, last: &str, random: &mut impl FnMut() -> u64) -> String {
    let (first, last) = (first.as_bytes(), last.as_bytes());
    let common = first.iter().zip(last).take_while(|(a, b)| a == b).count();
    let rest = || first[common..].iter().chain(&last[common..]).copied();
    let (Some(low), Some(high)) = (rest().min(), rest().max()) else {
        return String::from_utf8_lossy(first).into_owned();
    };
    let length = (first.len().max(last.len()) - common).min(PROBE_BYTES);
    let draw = |random: &mut dyn FnMut() -> u64, from: u8, to: u8| {
        let span = u64::from(to.saturating_sub(from)) + 1;
        // `random() % span` is below `span`, at most 256, so the sum is at most `to`.
        from.saturating_add(u8::try_from(random() % span).unwrap_or(0))
    };
    let mut key = first[..common].to_vec();
    let at = |key: &[u8], i: usize| key.get(common + i).copied().unwrap_or(0);
    key.push(draw(random, at(first, 0), at(last, 0).max(at(first, 0))));
    for _ in 1..length {
        key.push(draw(random, low, high));
    }
    // Cut where the bytes stop being UTF-8 (a probe past `last` only finds nothing).
    match String::from_utf8(key) {
        Ok(key) => key,
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let mut key = error.into_bytes();
            key.truncate(valid);
            String::from_utf8(key).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_between;

    #[test]
    fn probe_keys_stay_between_and_spread() {
        let mut n = 0u64;
        let mut random = || {
            n += 1;
            n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        };
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let key = key_between("game-000100", "game-000999", &mut random);
            assert!(
                key.starts_with("game-000") && key.as_str() <= "game-000999",
                "{key}"
            );
            assert!(key.bytes().skip(8).all(|b| b.is_ascii_digit()), "{key}");
            firsts.insert(key.as_bytes()[8]);
            // A probe past the last key finds nothing; one that is not UTF-8 is cut short.
            let key = key_between("p:aa", "p:\u{e9}t\u{e9}", &mut random);
            assert!(key.starts_with("p:"), "{key}");
        }
        // The first differing digit takes every value from 1 to 9.
        assert_eq!(firsts.len(), 9, "{firsts:?}");
        assert_eq!(key_between("same", "same", &mut random), "same");
        assert_eq!(key_between("a", "a1", &mut random).len(), 2);
    }
}
