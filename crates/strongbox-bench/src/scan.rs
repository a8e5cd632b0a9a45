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
//! operating system's page cache is warm for both (the collection was just written). Each side
//! reads the collection once, scan first.

use std::time::Instant;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use serde_json::Value;
use strongbox::{Config, Scan, Store};

use crate::dataset::Dataset;

/// The collection scanned.
pub const COLLECTION: &str = "bench_scan";

/// The records in the scanned collection by default.
pub const DEFAULT_RECORDS: usize = 100_000;

/// Records per transaction of the load.
const LOAD_BATCH: usize = 1_000;

/// The scan against one retrieve per key.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScanFigures {
    /// Records in the collection (each side reads them all once).
    pub records: u64,
    /// Values per second through `Collection::scan(Scan::all())`.
    pub values_per_s: f64,
    /// Values per second through one `retrieve` per key, in key order, from one task.
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

    let started = Instant::now();
    let mut entries = uncached.collection::<Value>(COLLECTION)?.scan(Scan::all());
    let mut scanned = 0usize;
    while let Some(entry) = entries.try_next().await.context("scan")? {
        std::hint::black_box(entry);
        scanned += 1;
    }
    let scan_elapsed = started.elapsed();
    anyhow::ensure!(
        scanned == keys.len(),
        "the scan read {scanned} records of {}",
        keys.len()
    );

    let started = Instant::now();
    for key in &keys {
        let value = uncached.retrieve::<Value>(COLLECTION, key).await?;
        anyhow::ensure!(value.is_some(), "{key} vanished");
        std::hint::black_box(value);
    }
    let retrieve_elapsed = started.elapsed();
    uncached.close().await?;
    let per_second = |elapsed: std::time::Duration| keys.len() as f64 / elapsed.as_secs_f64();
    Ok(ScanFigures {
        records: keys.len() as u64,
        values_per_s: per_second(scan_elapsed),
        retrieve_values_per_s: per_second(retrieve_elapsed),
    })
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
