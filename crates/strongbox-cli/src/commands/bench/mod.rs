//! `strongbox bench`: Strongbox against the seed's approach, on the same data, in one run.
//!
//! Workloads, each timed for `--duration` seconds on a fresh database in a temporary directory:
//! bulk load (transactions of 1,000 records); durable single-record stores from one task and
//! from `--concurrency` tasks (updates: a random key gets another value of its collection);
//! cache-hit reads (8 tasks); cold reads with the cache off (8 tasks, uniform and Zipfian 0.99
//! keys); a YCSB-A-like 50/50 read/update mix on Zipfian keys (`--concurrency` tasks). The
//! seed's approach (see [`seed`]) runs its writes and reads on the same data, and every figure
//! of ours is also given as a ratio against it. `--postgres URL` adds the same workloads on an
//! (empty) PostgreSQL database.
//!
//! `--json` prints one object whose field names are stable: `raw_bytes`, `file_bytes`,
//! `seed_file_bytes`, `peak_rss_bytes`, `cache_capacity_bytes`, `maintenance_ms` and
//! `dictionaries_trained` (the maintenance run after the bulk load), and for each workload
//! `<name>_ops_per_s`, `<name>_p50_us`, `<name>_p99_us` with names `bulk_load`, `write`
//! (concurrent), `write_single`, `read_hit`, `read_cold` (uniform), `read_cold_zipf`, `mixed`,
//! `seed_bulk_load`, `seed_write`, `seed_read`; `ratios` (ours / seed's); and `postgres` (the
//! same workload fields, or null).

mod seed;
mod workload;

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::{Config, Store};

use self::seed::SeedStore;
use self::workload::{Measured, Rng, Zipf, peak_rss_bytes, run_blocking_for, run_for};

/// Tasks for the read workloads.
const READ_TASKS: usize = 8;

/// Options of `strongbox bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// JSON lines to load: one `{"collection": ..., "key": ..., "value": ...}` per line.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Tasks for the concurrent write and mixed workloads.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds each timed workload runs.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run the workloads on this PostgreSQL database (it should be empty; the bench
    /// writes the dataset into it).
    #[arg(long)]
    pub postgres: Option<String>,
}

/// The dataset in memory: values kept as raw JSON, so memory stays close to the file's size.
struct Dataset {
    records: Vec<(String, String, Box<RawValue>)>,
    /// Indexes of the records of each collection, to pick realistic replacement values.
    by_collection: HashMap<String, Vec<usize>>,
    raw_bytes: u64,
}

#[derive(serde::Deserialize)]
struct Line {
    collection: String,
    key: String,
    value: Box<RawValue>,
}

fn load(path: &Path) -> anyhow::Result<Dataset> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut records = Vec::new();
    let mut by_collection: HashMap<String, Vec<usize>> = HashMap::new();
    let mut raw_bytes = 0u64;
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("line {}: parse JSON", number + 1))?;
        raw_bytes += parsed.value.get().len() as u64;
        by_collection
            .entry(parsed.collection.clone())
            .or_default()
            .push(records.len());
        records.push((parsed.collection, parsed.key, parsed.value));
    }
    anyhow::ensure!(!records.is_empty(), "{} holds no records", path.display());
    Ok(Dataset {
        records,
        by_collection,
        raw_bytes,
    })
}

impl Dataset {
    /// An update: a random record's key, and the value of another record of its collection.
    fn update(&self, rng: &mut Rng) -> (&str, &str, &RawValue) {
        let target = rng.below(self.records.len() as u64) as usize;
        let (collection, key, _) = &self.records[target];
        let same = self
            .by_collection
            .get(collection)
            .map_or(&[][..], Vec::as_slice);
        let source = same
            .get(rng.below(same.len() as u64) as usize)
            .copied()
            .unwrap_or(target);
        (collection, key, &self.records[source].2)
    }
}

/// Figures of one backend.
#[derive(Debug, Clone, Default, Serialize)]
struct Figures {
    bulk_load: Measured,
    write: Measured,
    write_single: Measured,
    read_hit: Measured,
    read_cold: Measured,
    read_cold_zipf: Measured,
    mixed: Measured,
    file_bytes: u64,
    /// The maintenance run after the bulk load (it trains the dictionaries), in milliseconds.
    maintenance_ms: u64,
    /// Dictionaries it trained.
    dictionaries_trained: u64,
}

/// Runs `strongbox bench`.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dataset = Arc::new(load(&args.dataset)?);
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let config = Config::new(dir.path().join("strongbox.db"));
    let cache_capacity_bytes = config.cache_capacity_bytes;
    if !args.json {
        eprintln!(
            "{} records, {} bytes of JSON values; {} s per workload",
            dataset.records.len(),
            dataset.raw_bytes,
            args.duration
        );
    }
    // A PostgreSQL database that cannot be reached fails now, not after the other workloads.
    if let Some(url) = &args.postgres {
        Store::open(Config::postgres(url.clone()))
            .await
            .context("open the PostgreSQL database")?
            .close()
            .await?;
    }
    let ours = run_ours(config, &dataset, args, duration)
        .await
        .context("run the Strongbox workloads")?;
    let seed_path = dir.path().join("seed.db");
    let seed_dataset = Arc::clone(&dataset);
    let seed = tokio::task::spawn_blocking(move || run_seed(&seed_path, &seed_dataset, duration))
        .await
        .context("run the seed's workloads")??;
    let postgres = match &args.postgres {
        Some(url) => Some(
            run_ours(Config::postgres(url.clone()), &dataset, args, duration)
                .await
                .context("run the PostgreSQL workloads")?,
        ),
        None => None,
    };
    let report = Report::new(&dataset, cache_capacity_bytes, ours, seed, postgres);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).context("encode the report")?
        );
    } else {
        report.print();
    }
    Ok(())
}

async fn run_ours(
    config: Config,
    dataset: &Arc<Dataset>,
    args: &BenchArgs,
    duration: Duration,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let store = Store::open(config.clone())
        .await
        .context("open the store")?;

    let started = Instant::now();
    let mut batch_latencies = Vec::new();
    for chunk in dataset.records.chunks(1000) {
        let begun = Instant::now();
        let mut tx = store.transaction();
        for (collection, key, value) in chunk {
            tx.store(collection, key, value)?;
        }
        tx.commit().await?;
        batch_latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let elapsed = started.elapsed();
    figures.bulk_load = Measured {
        ops: dataset.records.len() as u64,
        ops_per_s: dataset.records.len() as f64 / elapsed.as_secs_f64(),
        ..Measured::from_latencies(batch_latencies, elapsed)
    };
    let maintenance = store.maintenance().await?;
    figures.maintenance_ms = maintenance.elapsed_ms;
    figures.dictionaries_trained = maintenance.dictionaries_trained;
    figures.file_bytes = store.storage_stats().await?.file_bytes;

    let writes = |tasks: usize| {
        let store = store.clone();
        let dataset = Arc::clone(dataset);
        run_for(tasks, duration, move |task, n| {
            let store = store.clone();
            let dataset = Arc::clone(&dataset);
            async move {
                let mut rng = Rng::new((task as u64) << 32 | n);
                let (collection, key, value) = dataset.update(&mut rng);
                store.store(collection, key, value).await?;
                Ok(())
            }
        })
    };
    figures.write_single = writes(1).await?;
    figures.write = writes(args.concurrency.max(1)).await?;

    let keys: Arc<Vec<(String, String)>> = Arc::new(
        dataset
            .records
            .iter()
            .map(|(collection, key, _)| (collection.clone(), key.clone()))
            .collect(),
    );
    for (collection, key) in keys.iter() {
        store.retrieve::<serde_json::Value>(collection, key).await?;
    }
    let zipf = Arc::new(Zipf::new(keys.len() as u64, 0.99));
    let reads = |store: &Store, skewed: bool| {
        let store = store.clone();
        let keys = Arc::clone(&keys);
        let zipf = Arc::clone(&zipf);
        run_for(READ_TASKS, duration, move |task, n| {
            let store = store.clone();
            let keys = Arc::clone(&keys);
            let zipf = Arc::clone(&zipf);
            async move {
                let mut rng = Rng::new((task as u64) << 32 | n);
                let index = if skewed {
                    zipf.sample(&mut rng)
                } else {
                    rng.below(keys.len() as u64)
                };
                let (collection, key) = &keys[index as usize];
                anyhow::ensure!(
                    store
                        .retrieve::<serde_json::Value>(collection, key)
                        .await?
                        .is_some(),
                    "{key} vanished"
                );
                Ok(())
            }
        })
    };
    figures.read_hit = reads(&store, false).await?;

    let mut cold_config = config;
    cold_config.cache_capacity_bytes = 0;
    let cold = Store::open(cold_config)
        .await
        .context("open a second, uncached handle")?;
    figures.read_cold = reads(&cold, false).await?;
    figures.read_cold_zipf = reads(&cold, true).await?;
    cold.close().await?;

    let mixed_store = store.clone();
    let mixed_dataset = Arc::clone(dataset);
    let mixed_zipf = Arc::clone(&zipf);
    figures.mixed = run_for(args.concurrency.max(1), duration, move |task, n| {
        let store = mixed_store.clone();
        let dataset = Arc::clone(&mixed_dataset);
        let zipf = Arc::clone(&mixed_zipf);
        async move {
            let mut rng = Rng::new((task as u64) << 32 | n);
            let index = zipf.sample(&mut rng) as usize;
            let (collection, key, _) = &dataset.records[index];
            if rng.below(2) == 0 {
                store.retrieve::<serde_json::Value>(collection, key).await?;
            } else {
                let same = dataset
                    .by_collection
                    .get(collection)
                    .map_or(&[][..], Vec::as_slice);
                let source = same
                    .get(rng.below(same.len() as u64) as usize)
                    .copied()
                    .unwrap_or(index);
                store
                    .store(collection, key, &dataset.records[source].2)
                    .await?;
            }
            Ok(())
        }
    })
    .await?;
    store.close().await?;
    Ok(figures)
}

/// Figures of the seed's approach.
#[derive(Debug, Clone, Default)]
struct SeedFigures {
    bulk_load: Measured,
    write: Measured,
    read: Measured,
    file_bytes: u64,
}

fn run_seed(path: &Path, dataset: &Dataset, duration: Duration) -> anyhow::Result<SeedFigures> {
    let mut seed = SeedStore::open(path)?;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for (collection, key, value) in &dataset.records {
        let value: serde_json::Value =
            serde_json::from_str(value.get()).context("parse a value")?;
        batch.push((collection.clone(), key.clone(), value));
        if batch.len() == 1000 {
            seed.store_batch(&batch)?;
            batch.clear();
        }
    }
    seed.store_batch(&batch)?;
    let elapsed = started.elapsed();
    let bulk_load = Measured {
        ops: dataset.records.len() as u64,
        ops_per_s: dataset.records.len() as f64 / elapsed.as_secs_f64(),
        ..Measured::default()
    };
    let file_bytes = seed.file_bytes(path)?;
    let write = run_blocking_for(duration, |n| {
        let mut rng = Rng::new(n);
        let (collection, key, value) = dataset.update(&mut rng);
        let value: serde_json::Value =
            serde_json::from_str(value.get()).context("parse a value")?;
        seed.store(collection, key, &value)
    })?;
    let read = run_blocking_for(duration, |n| {
        let mut rng = Rng::new(n);
        let (collection, key, _) =
            &dataset.records[rng.below(dataset.records.len() as u64) as usize];
        anyhow::ensure!(seed.retrieve(collection, key)?.is_some(), "{key} vanished");
        Ok(())
    })?;
    Ok(SeedFigures {
        bulk_load,
        write,
        read,
        file_bytes,
    })
}

/// Everything measured, ready to print.
struct Report {
    raw_bytes: u64,
    records: u64,
    cache_capacity_bytes: u64,
    peak_rss_bytes: u64,
    ours: Figures,
    seed: SeedFigures,
    postgres: Option<Figures>,
}

impl Report {
    fn new(
        dataset: &Dataset,
        cache_capacity_bytes: u64,
        ours: Figures,
        seed: SeedFigures,
        postgres: Option<Figures>,
    ) -> Self {
        Report {
            raw_bytes: dataset.raw_bytes,
            records: dataset.records.len() as u64,
            cache_capacity_bytes,
            peak_rss_bytes: peak_rss_bytes(),
            ours,
            seed,
            postgres,
        }
    }

    /// (name, ours, the seed's figure it is compared with).
    fn rows(&self) -> Vec<(&'static str, Measured, Option<Measured>)> {
        let ours = &self.ours;
        let seed = &self.seed;
        vec![
            ("bulk_load", ours.bulk_load, Some(seed.bulk_load)),
            ("write", ours.write, Some(seed.write)),
            ("write_single", ours.write_single, Some(seed.write)),
            ("read_hit", ours.read_hit, Some(seed.read)),
            ("read_cold", ours.read_cold, Some(seed.read)),
            ("read_cold_zipf", ours.read_cold_zipf, Some(seed.read)),
            ("mixed", ours.mixed, None),
        ]
    }

    fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        let mut put = |name: &str, measured: &Measured| {
            object.insert(
                format!("{name}_ops_per_s"),
                serde_json::json!(measured.ops_per_s),
            );
            object.insert(format!("{name}_p50_us"), serde_json::json!(measured.p50_us));
            object.insert(format!("{name}_p99_us"), serde_json::json!(measured.p99_us));
        };
        for (name, measured, _) in self.rows() {
            put(name, &measured);
        }
        put("seed_bulk_load", &self.seed.bulk_load);
        put("seed_write", &self.seed.write);
        put("seed_read", &self.seed.read);
        let mut ratios = serde_json::Map::new();
        for (name, measured, baseline) in self.rows() {
            if let Some(baseline) = baseline {
                ratios.insert(
                    name.to_owned(),
                    serde_json::json!(ratio(measured.ops_per_s, baseline.ops_per_s)),
                );
            }
        }
        ratios.insert(
            "file_bytes".into(),
            serde_json::json!(ratio(
                self.ours.file_bytes as f64,
                self.seed.file_bytes as f64
            )),
        );
        object.insert("ratios".into(), serde_json::Value::Object(ratios));
        object.insert("records".into(), serde_json::json!(self.records));
        object.insert("raw_bytes".into(), serde_json::json!(self.raw_bytes));
        object.insert("file_bytes".into(), serde_json::json!(self.ours.file_bytes));
        object.insert(
            "maintenance_ms".into(),
            serde_json::json!(self.ours.maintenance_ms),
        );
        object.insert(
            "dictionaries_trained".into(),
            serde_json::json!(self.ours.dictionaries_trained),
        );
        object.insert(
            "seed_file_bytes".into(),
            serde_json::json!(self.seed.file_bytes),
        );
        object.insert(
            "peak_rss_bytes".into(),
            serde_json::json!(self.peak_rss_bytes),
        );
        object.insert(
            "cache_capacity_bytes".into(),
            serde_json::json!(self.cache_capacity_bytes),
        );
        object.insert(
            "postgres".into(),
            self.postgres
                .as_ref()
                .map_or(serde_json::Value::Null, |figures| {
                    serde_json::json!(figures)
                }),
        );
        serde_json::Value::Object(object)
    }

    fn print(&self) {
        println!(
            "{:<16} {:>12} {:>9} {:>9} {:>12} {:>8}",
            "workload", "ops/s", "p50 µs", "p99 µs", "seed ops/s", "ratio"
        );
        for (name, measured, baseline) in self.rows() {
            let (seed, ratio_text) = match baseline {
                Some(baseline) => (
                    format!("{:.0}", baseline.ops_per_s),
                    format!("{:.2}x", ratio(measured.ops_per_s, baseline.ops_per_s)),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            println!(
                "{name:<16} {:>12.0} {:>9} {:>9} {seed:>12} {ratio_text:>8}",
                measured.ops_per_s, measured.p50_us, measured.p99_us
            );
        }
        println!(
            "{:<16} {:>12} {:>9} {:>9} {:>12} {:>7.2}x",
            "file bytes",
            self.ours.file_bytes,
            "",
            "",
            self.seed.file_bytes,
            ratio(self.ours.file_bytes as f64, self.seed.file_bytes as f64)
        );
        println!(
            "file measured after the bulk load and one maintenance run ({} ms, {} dictionaries trained)",
            self.ours.maintenance_ms, self.ours.dictionaries_trained
        );
        println!(
            "raw JSON {} bytes; peak RSS {} MiB (cache budget {} MiB)",
            self.raw_bytes,
            self.peak_rss_bytes >> 20,
            self.cache_capacity_bytes >> 20
        );
        if let Some(postgres) = &self.postgres {
            println!("\nPostgreSQL (same workloads) against SQLite:");
            let pairs = [
                ("bulk_load", postgres.bulk_load, self.ours.bulk_load),
                ("write", postgres.write, self.ours.write),
                (
                    "write_single",
                    postgres.write_single,
                    self.ours.write_single,
                ),
                ("read_hit", postgres.read_hit, self.ours.read_hit),
                ("read_cold", postgres.read_cold, self.ours.read_cold),
                (
                    "read_cold_zipf",
                    postgres.read_cold_zipf,
                    self.ours.read_cold_zipf,
                ),
                ("mixed", postgres.mixed, self.ours.mixed),
            ];
            for (name, pg, sqlite) in pairs {
                println!(
                    "{name:<16} {:>12.0} {:>9} {:>9} {:>12.0} {:>7.2}x",
                    pg.ops_per_s,
                    pg.p50_us,
                    pg.p99_us,
                    sqlite.ops_per_s,
                    ratio(pg.ops_per_s, sqlite.ops_per_s)
                );
            }
            println!("{:<16} {:>12}", "table bytes", postgres.file_bytes);
        }
    }
}

fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs > 0.0 { ours / theirs } else { 0.0 }
}
