//! Adaptive compression, the training step: each collection with enough values gets a zstd
//! dictionary trained on a sample of them, and its values are recompressed with it.
//!
//! - **When.** [`Store::train_dictionaries`] runs as a maintenance step (and after a CLI
//!   import); while a collection without a dictionary is written, `while_writing` trains it
//!   in the background as soon as it has enough values. A collection of at least `Config::dictionary_min_values` records without a
//!   dictionary gets one; a collection whose newest values compress more than
//!   [`DRIFT`] worse with its dictionary than when it was trained gets a new one.
//! - **Kept only when it pays.** A trained dictionary is measured on held-out values against
//!   plain zstd and kept only when it saves at least [`MIN_GAIN`] of their compressed size.
//! - **Stored, never deleted.** A dictionary is stored in the database before any blob uses
//!   it, and no dictionary is ever deleted, so every value stays readable, also from caches
//!   and backups. Blobs name their dictionary by its content-derived zstd id.
//! - **Recompression.** After training, the collection's values are rewritten with the new
//!   dictionary in batches, each a short job between group commits, at zstd level
//!   [`RECOMPRESSION_LEVEL`] (new writes use the configured, faster level). A blob's id is the
//!   hash of its value, not of its encoding, so ids, references and caches are untouched; each
//!   value is verified against its id before it is re-encoded, and a damaged one is left for
//!   `verify`.
//! - **Other processes** (PostgreSQL servers) load a dictionary the first time they meet a value
//!   compressed with it, and compress with it after their next `train_dictionaries`.
//!
//! **Invariant:** a dictionary reaches the registry (`dictionaries`) only through the database:
//! it is stored first, then the registry reloads, so no blob ever names a dictionary that is
//! not stored.

mod while_writing;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::{DictionaryStorage, StoredDictionary};
use crate::blob::{self, BlobId};
use crate::clock::now_ms;
use crate::codec::{self, Algorithm, Codec, Compression, Dictionary, DictionaryLookup};
use crate::dictionaries::Known;
use crate::error::{Error, Result};
use crate::store::Store;

/// Values sampled to train a dictionary (a fifth of them are held out to measure it).
const SAMPLE_VALUES: usize = 1_250;
/// Newest values compressed to detect drift.
const DRIFT_SAMPLE: usize = 200;
/// A dictionary is replaced when its collection's newest values compress this much worse
/// (relative) than the held-out values did when it was trained.
pub const DRIFT: f64 = 0.20;
/// A new dictionary must save at least this share of the compressed size it replaces.
pub const MIN_GAIN: f64 = 0.10;
/// Values recompressed per batch (one writer job each).
const RECOMPRESS_BATCH: usize = 256;
/// The zstd level values are recompressed at (or the configured level, if higher). Rewriting
/// happens in maintenance, off the write path, so it can afford a slow level: on the sample
/// data, level 15 stores 7% fewer bytes than level 3 (levels 4 to 12 do no better than 3 with a
/// dictionary), at about 0.2 ms per value. Decompression is as fast as at level 3.
pub const RECOMPRESSION_LEVEL: i32 = 15;

/// What [`Store::train_dictionaries`] did with one collection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CollectionCompression {
    /// The collection.
    pub collection: String,
    /// Its records.
    pub records: u64,
    /// What happened: `trained`, `retrained`, `kept`, `no_gain`, `too_few_values`.
    pub action: &'static str,
    /// Compressed/raw size of sampled values before (with the old dictionary or none).
    pub ratio_before: Option<f64>,
    /// Compressed/raw size of held-out values with the new dictionary.
    pub ratio_after: Option<f64>,
    /// The dictionary new values are written with, if any (hex id).
    pub dictionary: Option<String>,
    /// Values rewritten with the new dictionary.
    pub values_recompressed: u64,
    /// Stored bytes saved by the rewrite.
    pub bytes_saved: u64,
}

/// What [`Store::train_dictionaries`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompressionReport {
    /// One entry per collection, in name order.
    pub collections: Vec<CollectionCompression>,
    /// Total time, in milliseconds.
    pub elapsed_ms: u64,
}

impl CompressionReport {
    /// One line for the maintenance report.
    pub fn summary(&self) -> String {
        let changed: Vec<String> = self
            .collections
            .iter()
            .filter(|c| matches!(c.action, "trained" | "retrained"))
            .map(|c| {
                format!(
                    "{} {} ({:.2} -> {:.2}, {} values, {} bytes saved)",
                    c.action,
                    c.collection,
                    c.ratio_before.unwrap_or(1.0),
                    c.ratio_after.unwrap_or(1.0),
                    c.values_recompressed,
                    c.bytes_saved
                )
            })
            .collect();
        if changed.is_empty() {
            let with = self
                .collections
                .iter()
                .filter(|c| c.dictionary.is_some())
                .count();
            format!(
                "{with} of {} collections compress with a dictionary; none needed training",
                self.collections.len()
            )
        } else {
            changed.join("; ")
        }
    }
}

impl Store {
    /// Trains compression dictionaries where they pay and recompresses those collections'
    /// values (see the module docs of `training`). Runs as a maintenance step; call it
    /// directly after a bulk load to compact the new data at once.
    ///
    /// # Errors
    /// Backend errors; `Error::InvalidConfig` when compression is not zstd or dictionaries are
    /// off (`dictionary_min_values = 0`) is not an error: the report is then empty.
    ///
    /// # Cancel safety
    /// Cancel safe: a dictionary is stored before any value uses it, and each batch of
    /// rewritten values commits alone.
    pub async fn train_dictionaries(&self) -> Result<CompressionReport> {
        let started = Instant::now();
        let mut report = CompressionReport::default();
        let compression = self.config().compression;
        let min_values = self.config().dictionary_min_values;
        if compression.algorithm != Algorithm::Zstd || min_values == 0 {
            return Ok(report);
        }
        self.dictionaries().reload(self.backend()).await?;
        for (collection, records) in self.backend().collection_sizes().await? {
            let outcome = if records < min_values {
                CollectionCompression::new(collection, records, "too_few_values")
            } else {
                self.compress_collection(collection, records, &CancellationToken::new())
                    .await?
            };
            report.collections.push(outcome);
        }
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Trains (or retrains) one collection's dictionary when it pays, and recompresses its
    /// values with it; `records` is only reported.
    pub(crate) async fn compress_collection(
        &self,
        collection: String,
        records: u64,
        stop: &CancellationToken,
    ) -> Result<CollectionCompression> {
        let known = self.dictionaries().load();
        let current = known.current(&collection).cloned();
        let mut outcome = CollectionCompression::new(collection.clone(), records, "kept");
        outcome.dictionary = current.as_ref().map(|(d, _)| format!("{:08x}", d.id()));
        let newest = current.is_some();
        let sample = self.sample_raw(&collection, &known, newest).await?;
        let ratio_now = ratio(&sample, current.as_ref().map(|(d, _)| &**d));
        outcome.ratio_before = Some(ratio_now);
        if let Some((_, trained_ratio)) = &current
            && ratio_now <= trained_ratio * (1.0 + DRIFT)
        {
            return Ok(outcome);
        }
        let sample = if newest {
            self.sample_raw(&collection, &known, false).await?
        } else {
            sample
        };
        let level = compression_level(self);
        let trained = tokio::task::spawn_blocking(move || train_and_measure(sample, level))
            .await
            .map_err(|error| Error::backend("train a dictionary", error.to_string()))?;
        let Some((dictionary, held_out, baseline)) = trained else {
            outcome.action = "no_gain";
            return Ok(outcome);
        };
        // Against what values compress to now: the old dictionary, or plain zstd.
        let to_beat = if current.is_some() {
            ratio_now.min(baseline)
        } else {
            baseline
        };
        outcome.ratio_before = Some(to_beat);
        if held_out > to_beat * (1.0 - MIN_GAIN) {
            outcome.action = "no_gain";
            return Ok(outcome);
        }
        self.backend()
            .add_dictionary(StoredDictionary {
                id: dictionary.id(),
                collection: collection.clone(),
                bytes: dictionary.bytes().to_vec(),
                created_at_ms: now_ms(),
                ratio: held_out,
            })
            .await?;
        self.dictionaries().reload(self.backend()).await?;
        outcome.action = if current.is_some() {
            "retrained"
        } else {
            "trained"
        };
        outcome.ratio_after = Some(held_out);
        outcome.dictionary = Some(format!("{:08x}", dictionary.id()));
        let (values, saved) = self.recompress(&collection, stop).await?;
        outcome.values_recompressed = values;
        outcome.bytes_saved = saved;
        Ok(outcome)
    }

    /// Decoded values of a collection: a random sample, or its newest values.
    async fn sample_raw(
        &self,
        collection: &str,
        known: &Known,
        newest: bool,
    ) -> Result<Vec<Vec<u8>>> {
        let limit = if newest { DRIFT_SAMPLE } else { SAMPLE_VALUES };
        let max = self.config().max_value_bytes;
        let stored = self
            .backend()
            .sample_values(collection, limit, newest)
            .await?;
        // A value that does not verify is left out: `verify` reports it.
        Ok(stored
            .into_iter()
            .filter_map(|(id, stored)| blob::decode_verified(&id, &stored, max, known).ok())
            .collect())
    }

    /// Rewrites the collection's values with its current dictionary where that is smaller;
    /// returns how many were rewritten and the bytes saved. Pages of [`RECOMPRESS_BATCH`]
    /// values are re-encoded on every core ([`reencode_page`]) while the writer stores the
    /// previous page, so the writer is busy only for the short rewrite jobs.
    async fn recompress(&self, collection: &str, stop: &CancellationToken) -> Result<(u64, u64)> {
        let known = self.dictionaries().load();
        let Some(dictionary) = known.current(collection).map(|(d, _)| Arc::clone(d)) else {
            return Ok((0, 0));
        };
        let compression = self.config().compression;
        let level = compression.level.zstd_level().max(RECOMPRESSION_LEVEL);
        // The same dictionary (same id, so blobs name it alike), prepared at the slow level.
        let dictionary = Arc::new(
            Dictionary::new(dictionary.bytes().to_vec(), level)
                .map_err(|error| Error::backend("prepare a dictionary", error.to_string()))?,
        );
        let recode = Recode {
            known,
            dictionary,
            compression,
            max: self.config().max_value_bytes,
        };
        let (mut values, mut saved) = (0, 0);
        let mut next = self.reencoded_page(collection, None, &recode).await?;
        while let Some((rewrites, last, is_full)) = next {
            let batch_saved: u64 = rewrites.iter().map(|(_, _, saved)| saved).sum();
            let write = self.backend().rewrite_blobs(
                rewrites
                    .into_iter()
                    .map(|(id, stored, _)| (id, stored))
                    .collect(),
            );
            // Once `stop` fires, this page is the last: nothing is left running on a reader.
            let following = async {
                if is_full && !stop.is_cancelled() {
                    self.reencoded_page(collection, Some(last), &recode).await
                } else {
                    Ok(None)
                }
            };
            let (rewritten, following) = futures_util::future::try_join(write, following).await?;
            values += rewritten;
            saved += batch_saved;
            next = following;
        }
        Ok((values, saved))
    }

    /// The page of the collection's values after key `after`, re-encoded: the rewrites, the
    /// page's last key, and whether the page was full (more may follow). `None` past the end.
    async fn reencoded_page(
        &self,
        collection: &str,
        after: Option<String>,
        recode: &Recode,
    ) -> Result<Option<(Vec<Rewrite>, String, bool)>> {
        let page = self
            .backend()
            .values_after(collection, after, RECOMPRESS_BATCH)
            .await?;
        let Some((last, _, _)) = page.last() else {
            return Ok(None);
        };
        let last = last.clone();
        let is_full = page.len() == RECOMPRESS_BATCH;
        let recode = recode.clone();
        let rewrites = tokio::task::spawn_blocking(move || reencode_page(page, &recode))
            .await
            .map_err(|error| Error::backend("recompress values", error.to_string()))?;
        Ok(Some((rewrites, last, is_full)))
    }
}

/// A value's new encoding: its id, the stored bytes, and the bytes it saves.
type Rewrite = (BlobId, Vec<u8>, u64);

/// What re-encoding a value needs.
#[derive(Clone)]
struct Recode {
    known: Arc<Known>,
    dictionary: Arc<Dictionary>,
    compression: Compression,
    max: usize,
}

/// Re-encodes a page of `(key, id, stored)` values on as many threads as there are cores; keys
/// sharing a value list it once each, and it is rewritten once.
fn reencode_page(page: Vec<(String, BlobId, Vec<u8>)>, recode: &Recode) -> Vec<Rewrite> {
    let mut seen = std::collections::HashSet::new();
    let values: Vec<(BlobId, Vec<u8>)> = page
        .into_iter()
        .filter(|(_, id, _)| seen.insert(*id))
        .map(|(_, id, stored)| (id, stored))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let share = values.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = values
            .chunks(share)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(id, stored)| {
                            reencode(
                                id,
                                stored,
                                &recode.dictionary,
                                recode.compression,
                                recode.max,
                                &*recode.known,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A worker that panicked re-encoded nothing: its values keep their encoding.
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    })
}

impl CollectionCompression {
    /// An outcome with nothing measured yet.
    pub(crate) fn new(collection: String, records: u64, action: &'static str) -> Self {
        CollectionCompression {
            collection,
            records,
            action,
            ratio_before: None,
            ratio_after: None,
            dictionary: None,
            values_recompressed: 0,
            bytes_saved: 0,
        }
    }
}

/// The value's new encoding and the bytes it saves, when the dictionary makes it smaller and
/// the old encoding verifies; `None` otherwise (already compressed with it, not smaller, or
/// damaged: `verify` reports that).
fn reencode(
    id: &BlobId,
    stored: &[u8],
    dictionary: &Dictionary,
    compression: Compression,
    max: usize,
    known: &dyn DictionaryLookup,
) -> Option<(BlobId, Vec<u8>, u64)> {
    if codec::dictionary_of(stored) == Some(dictionary.id()) {
        return None;
    }
    let raw = blob::decode_verified(id, stored, max, known).ok()?;
    let encoded = codec::encode(&raw, compression, Some(dictionary));
    let saved = stored.len().checked_sub(encoded.len())?;
    (saved > 0 && codec::codec_of(&encoded) == Some(Codec::ZstdDictionary)).then_some((
        *id,
        encoded,
        saved as u64,
    ))
}

/// Compressed over raw size of `values` with `dictionary` (or plain zstd); 1.0 for none.
fn ratio(values: &[Vec<u8>], dictionary: Option<&Dictionary>) -> f64 {
    let raw: usize = values.iter().map(Vec::len).sum();
    if raw == 0 {
        return 1.0;
    }
    let stored: usize = values
        .iter()
        .map(|value| codec::encode(value, Compression::default(), dictionary).len())
        .sum();
    stored as f64 / raw as f64
}

/// Trains on four fifths of `sample` and measures on the rest: the dictionary, its ratio on the
/// held-out values, and plain zstd's ratio on them. `None` when training fails.
fn train_and_measure(sample: Vec<Vec<u8>>, level: i32) -> Option<(Dictionary, f64, f64)> {
    let held_out_from = sample.len() * 4 / 5;
    let (training, held_out) = sample.split_at(held_out_from);
    if held_out.is_empty() {
        return None;
    }
    let bytes = codec::dictionary::train(training)?;
    let dictionary = Dictionary::new(bytes, level).ok()?;
    let with = ratio(held_out, Some(&dictionary));
    let without = ratio(held_out, None);
    Some((dictionary, with, without))
}

fn compression_level(store: &Store) -> i32 {
    store.config().compression.level.zstd_level()
}
