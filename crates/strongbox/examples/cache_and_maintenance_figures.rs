//! Cache and maintenance figures on a JSON Lines sample (`{"collection", "key", "value"}` per
//! line): the hit ratio of Zipfian (0.99) reads with a cache of 10% of the stored data, then
//! the maintenance report after deleting every other record.
//!
//! ```text
//! cargo run --release -p strongbox-store --example cache_and_maintenance_figures -- ../shared/data/bitcraps-sample.jsonl
//! ```

use std::io::BufRead;

use strongbox::{Config, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sample = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/bitcraps-sample.jsonl".to_owned());
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sample.db");
    let mut keys = Vec::new();
    {
        let store = Store::open(Config::new(&db)).await?;
        let mut tx = store.transaction();
        for line in std::io::BufReader::new(std::fs::File::open(&sample)?).lines() {
            let line: serde_json::Value = serde_json::from_str(&line?)?;
            let collection = line["collection"].as_str().unwrap_or_default().to_owned();
            let key = line["key"].as_str().unwrap_or_default().to_owned();
            tx.store(&collection, &key, &line["value"])?;
            keys.push((collection, key));
            if tx.len() == 1000 {
                std::mem::replace(&mut tx, store.transaction())
                    .commit()
                    .await?;
            }
        }
        tx.commit().await?;
        store.close().await?;
    }
    keys.sort();
    keys.dedup();

    // Zipfian reads (YCSB's generator, theta 0.99) with a cache of 10% of the stored bytes.
    let mut config = Config::new(&db);
    let stored = {
        let store = Store::open(Config::new(&db)).await?;
        let stats = store.storage_stats().await?;
        store.close().await?;
        stats.stored_bytes
    };
    config.cache_capacity_bytes = stored / 10;
    let store = Store::open(config).await?;
    let n = keys.len() as f64;
    let theta = 0.99f64;
    let zeta = |count: u64| {
        (1..=count)
            .map(|i| 1.0 / (i as f64).powf(theta))
            .sum::<f64>()
    };
    let (zeta_n, zeta_2) = (zeta(keys.len() as u64), zeta(2));
    let eta = (1.0 - (2.0 / n).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let reads = 200_000;
    for _ in 0..reads {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let u = (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let uz = u * zeta_n;
        let index = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(theta) {
            1
        } else {
            ((n * (eta * u - eta + 1.0).powf(1.0 / (1.0 - theta))) as usize).min(keys.len() - 1)
        };
        let (collection, key) = &keys[index];
        store.retrieve::<serde_json::Value>(collection, key).await?;
    }
    let cache = store.stats().await?.cache;
    println!(
        "zipfian reads: {reads}, cache {} of {} stored bytes (10%): hit ratio {:.3} ({} hits, {} misses, {} evictions)",
        cache.capacity_bytes, stored, cache.hit_ratio, cache.hits, cache.misses, cache.evictions
    );

    // Delete every other record, then maintain.
    for (collection, key) in keys.iter().step_by(2) {
        store.delete(collection, key).await?;
    }
    let report = store.maintenance().await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    store.close().await?;
    Ok(())
}
