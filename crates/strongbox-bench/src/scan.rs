//! The scan workload: reading a whole collection through `Collection::scan(Scan::all())`, one
//! stream read in pages, against reading the same keys with one `Store::retrieve` each, in key
//! order, from one task.
//!
//! The collection ([`COLLECTION`], `--scan-records` records, 100,000 by default) is made from
//! the dataset's values, taken in turn, each object given a `scan_copy` field so that every
//! value is distinct (no deduplication flatters either side), under keys of 16 hex digits in
//! an order unrelated to the one they are written in, as an application's ids are. It is
//! bulk-loaded in transactions of 1,000 records. Both reads run on a second handle with the
//! cache off (`cache_capacity_bytes = 0`), so every value comes from the database, is checked
//! against its seal and hash and is decoded into a `serde_json::Value`, on both sides; the
//! operating system's page cache is warm for both (the collection was just written). The two
//! sides take turns, scan first, for [`ROUNDS`] rounds; each side's figure is its median.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use serde_json::Value;
use strongbox::{Collection, Config, Scan, Store};

use crate::dataset::Dataset;

/// The collection scanned.
pub const COLLECTION: &str = "bench_scan";

/// The records in the scanned collection by default.
pub const DEFAULT_RECORDS: usize = 100_000;

/// Rounds of one scan then one pass of retrieves: each side's figure is its median, so a burst
/// of another load on a shared machine falls on one round, not on one side.
const ROUNDS: usize = 3;

/// Records per transaction of the load.
const LOAD_BATCH: usize = 1_000;

/// The scan against one retrieve per key.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScanFigures {
    /// Records in the collection (each side reads them all once a round).
    pub records: u64,
    /// Rounds of one scan then one pass of retrieves; the figures are their medians.
    pub rounds: usize,
    /// Values per second through `Collection::scan(Scan::all())` (median of the rounds).
    pub values_per_s: f64,
    /// Values per second through one `retrieve` per key, in key order, from one task (median
    /// of the rounds).
    pub retrieve_values_per_s: f64,
}

/// Loads the collection into `store`, then reads it both ways through an uncached handle
/// opened with `config`.
///
/// # Errors
/// When a store call fails or a read misses a record.
pub async fn run(
    config: &Config,
    store: &Store,
    dataset: &Dataset,
    records: usize,
) -> anyhow::Result<ScanFigures> {
    let mut keys = load(store, dataset, records).await?;
    keys.sort_unstable();
    let mut uncached_config = config.clone();
    uncached_config.cache_capacity_bytes = 0;
    let uncached = Store::open(uncached_config)
        .await
        .context("open an uncached handle for the scan")?;

    let collection = uncached.collection::<Value>(COLLECTION)?;
    let (mut scans, mut retrieves) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        scans.push(per_second(
            keys.len(),
            scan_once(&collection, keys.len()).await?,
        ));
        retrieves.push(per_second(
            keys.len(),
            retrieve_once(&uncached, &keys).await?,
        ));
    }
    uncached.close().await?;
    Ok(ScanFigures {
        records: keys.len() as u64,
        rounds: ROUNDS,
        values_per_s: median(scans),
        retrieve_values_per_s: median(retrieves),
    })
}

/// Reads the collection once through a scan; returns how long it took.
async fn scan_once(collection: &Collection<Value>, expected: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut entries = collection.scan(Scan::all());
    let mut scanned = 0usize;
    while let Some(entry) = entries.try_next().await.context("scan")? {
        std::hint::black_box(entry);
        scanned += 1;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        scanned == expected,
        "the scan read {scanned} records of {expected}"
    );
    Ok(elapsed)
}

/// Reads `keys` with one retrieve each; returns how long it took.
async fn retrieve_once(store: &Store, keys: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for key in keys {
        let value = store.retrieve::<Value>(COLLECTION, key).await?;
        anyhow::ensure!(value.is_some(), "{key} vanished");
        std::hint::black_box(value);
    }
    Ok(started.elapsed())
}

/// `values` read in `elapsed`, per second.
fn per_second(values: usize, elapsed: Duration) -> f64 {
    values as f64 / elapsed.as_secs_f64()
}

/// The median of a few figures (the upper one of an even count).
fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures.get(figures.len() / 2).copied().unwrap_or(0.0)
}

/// Writes `records` records into [`COLLECTION`]; returns their keys, in the order written.
async fn load(store: &Store, dataset: &Dataset, records: usize) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::with_capacity(records);
    let mut tx = store.transaction();
    for number in 0..records {
        let source = number % dataset.records.len();
        let mut value: Value = serde_json::from_str(dataset.records[source].2.get())
            .context("parse a value of the dataset")?;
        if let Value::Object(fields) = &mut value {
            fields.insert(
                "scan_copy".to_owned(),
                Value::from(number / dataset.records.len()),
            );
        }
        let key = scan_key(number as u64);
        tx.store(COLLECTION, &key, &value)?;
        keys.push(key);
        if keys.len() % LOAD_BATCH == 0 {
            std::mem::replace(&mut tx, store.transaction())
                .commit()
                .await
                .context("load the scanned collection")?;
        }
    }
    tx.commit().await.context("load the scanned collection")?;
    Ok(keys)
}

/// The key of record `number`: 16 hex digits of SplitMix64's mix of it, a bijection, so keys
/// are distinct and their order has nothing to do with `number`'s.
fn scan_key(number: u64) -> String {
    let mut mixed = number.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", mixed ^ (mixed >> 31))
}
