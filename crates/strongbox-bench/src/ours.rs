//! Strongbox's workloads on one backend: a bulk load; concurrent writes without maintenance, then
//! the same writes while the first maintenance run (dictionary training, recompression, vacuum
//! decision, a backup) works beside them; then timed writes, the change feed's cost and lag
//! (see `feed`), cache-hit reads, cold reads, a read/update mix, transfers (see `transfer`) and a
//! scan (see `scan`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::RngExt as _;
use serde::Serialize;
use strongbox::{Config, Store};

use crate::dataset::Dataset;
use crate::feed::FeedFigures;
use crate::scan::ScanFigures;
use crate::transfer::TransferFigures;
use crate::workload::{
    Latencies, Measured, READ_TASKS, Zipf, run_for, time_tasks, time_tasks_while,
};

/// Records in each transaction of the bulk load.
const BULK_BATCH: usize = 1000;

/// Figures of one backend; serialized as they are for `postgres` in the `--json` report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Loading the dataset in transactions of 1,000 records (latencies are per transaction).
    pub bulk_load: Measured,
    /// Updates from `--concurrency` tasks.
    pub write: Measured,
    /// The same updates right after the bulk load, for `--duration`, no maintenance running.
    pub write_without_maintenance: Measured,
    /// The same updates while the first maintenance run after the bulk load works.
    pub write_during_maintenance: Measured,
    /// Updates from one task.
    pub write_single: Measured,
    /// Reads of Zipfian keys through the cache (`cache_capacity_bytes`: a tenth of the data).
    pub read_hit: Measured,
    /// The share of `read_hit`'s reads the cache served.
    pub read_hit_ratio: f64,
    /// Reads with the cache off, uniform keys.
    pub read_cold: Measured,
    /// Reads with the cache off, Zipfian keys.
    pub read_cold_zipf: Measured,
    /// Half reads, half updates, Zipfian keys, from `--concurrency` tasks.
    pub mixed: Measured,
    /// Transfers between Zipfian accounts in `Store::transact`, from `--concurrency` tasks.
    pub transfer: Measured,
    /// Transfer closure runs that did not commit, per committed transfer.
    pub transfer_retry_rate: f64,
    /// SQLite only: the same transfers on rusqlite ([`crate::transfer`]), run in turns with
    /// ours.
    pub transfer_baseline: Option<Measured>,
    /// Each round of the transfers: ours and the baseline's, per second.
    pub transfer_rounds: Vec<(f64, f64)>,
    /// Concurrent updates with the change feed off and on, and a subscriber's lag.
    pub feed: FeedFigures,
    /// A collection read by one scan, and by one retrieve per key.
    pub scan: ScanFigures,
    /// File (or table) bytes after the bulk load, the maintenance run beside the writes and a
    /// second one alone.
    pub file_bytes: u64,
    /// SQLite only: the bytes of each table and index in that file (`dbstat`), which show what
    /// `file_bytes` holds; among them `changes`, the change feed, which grows with the writes
    /// the timed workloads made before it was measured (a faster run holds more changes).
    pub file_tables: BTreeMap<String, u64>,
    /// The maintenance run after the bulk load (it trains the dictionaries), in milliseconds,
    /// under the concurrent writes of `write_during_maintenance`.
    pub maintenance_ms: u64,
    /// Its steps: name and milliseconds.
    pub maintenance_steps: Vec<(String, u64)>,
    /// Dictionaries it trained.
    pub dictionaries_trained: u64,
    /// PostgreSQL only: the engine's own upserts from as many connections (see `upserts`),
    /// all rounds of `upsert_rounds` together.
    pub engine_upsert: Option<Measured>,
    /// PostgreSQL only: our concurrent writes and the engine's upserts, back to back, in
    /// [`crate::upserts::ROUNDS`] rounds (see `upserts::paired`).
    pub upsert_rounds: Vec<crate::upserts::Round>,
}

impl Figures {
    /// Each timed workload with its name in the report, in the report's order.
    pub fn workloads(&self) -> [(&'static str, Measured); 9] {
        [
            ("bulk_load", self.bulk_load),
            ("write", self.write),
            ("write_without_maintenance", self.write_without_maintenance),
            ("write_during_maintenance", self.write_during_maintenance),
            ("write_single", self.write_single),
            ("read_hit", self.read_hit),
            ("read_cold", self.read_cold),
            ("read_cold_zipf", self.read_cold_zipf),
            ("mixed", self.mixed),
        ]
    }
}

/// How a read picks its key.
#[derive(Debug, Clone, Copy)]
enum KeyChoice {
    /// Every key alike.
    Uniform,
    /// Zipfian 0.99: a few keys take most reads.
    Zipfian,
}

/// What the timed operations work on; cloned into every task.
#[derive(Clone)]
struct Target {
    store: Store,
    dataset: Arc<Dataset>,
    zipf: Arc<Zipf>,
}

/// Runs every workload on a new store of `config`, each timed one for `duration`; the
/// concurrent ones on `concurrency` tasks; the scan over `scan_records` records; the transfers
/// in turns with their rusqlite baseline in a new database at `transfer_baseline`, if given.
///
/// # Errors
/// When the store cannot be opened, an operation fails or the transfers lose money.
pub async fn run(
    config: Config,
    dataset: &Arc<Dataset>,
    concurrency: usize,
    duration: Duration,
    scan_records: usize,
    transfer_baseline: Option<&Path>,
) -> anyhow::Result<Figures> {
    let concurrency = concurrency.max(1);
    let store = Store::open(config.clone())
        .await
        .context("open the store")?;
    let bulk_load = bulk_load(&store, dataset).await?;
    let target = Target {
        store: store.clone(),
        dataset: Arc::clone(dataset),
        zipf: Arc::new(Zipf::new(dataset.records.len() as u64, 0.99)),
    };
    let write_without_maintenance = target.writes(concurrency, duration).await?;
    let (maintenance, write_during_maintenance) =
        target.writes_during_maintenance(concurrency).await?;
    // The file as maintenance leaves it when nothing else writes: a second run checkpoints
    // what the writes beside the first left in the WAL.
    store.maintenance().await?;
    let file_bytes = store.storage_stats().await?.file_bytes;
    let file_tables = match config.postgres_url {
        Some(_) => BTreeMap::new(),
        None => table_bytes(&config.path).context("measure the file's tables")?,
    };
    let write_single = target.writes(1, duration).await?;
    let write = target.writes(concurrency, duration).await?;
    let feed = crate::feed::run(&config, &store, dataset, concurrency, duration)
        .await
        .context("run the change feed's workloads")?;
    let (read_hit, read_hit_ratio) = target.cache_hits(duration).await?;

    let mut cold_config = config.clone();
    cold_config.cache_capacity_bytes = 0;
    let cold = Target {
        store: Store::open(cold_config)
            .await
            .context("open a second, uncached handle")?,
        ..target.clone()
    };
    let read_cold = cold.reads(KeyChoice::Uniform, duration).await?;
    let read_cold_zipf = cold.reads(KeyChoice::Zipfian, duration).await?;
    cold.store.close().await?;

    let mixed = target.mixed(concurrency, duration).await?;
    let TransferFigures {
        measured: transfer,
        retry_rate: transfer_retry_rate,
        baseline: transfer_baseline,
        rounds: transfer_rounds,
    } = crate::transfer::run_ours(&store, concurrency, duration, transfer_baseline)
        .await
        .context("run the transfers")?;
    let scan = crate::scan::run(&config, &store, dataset, scan_records)
        .await
        .context("run the scan")?;
    store.close().await?;
    Ok(Figures {
        bulk_load,
        write,
        write_without_maintenance,
        write_during_maintenance,
        write_single,
        read_hit,
        read_hit_ratio,
        read_cold,
        read_cold_zipf,
        mixed,
        transfer,
        transfer_retry_rate,
        transfer_baseline,
        transfer_rounds,
        feed,
        scan,
        file_bytes,
        file_tables,
        maintenance_ms: maintenance.elapsed_ms,
        maintenance_steps: maintenance
            .steps
            .iter()
            .map(|step| (step.name.to_owned(), step.elapsed_ms))
            .collect(),
        dictionaries_trained: maintenance.dictionaries_trained,
        engine_upsert: None,
        upsert_rounds: Vec::new(),
    })
}

/// The bytes of each table and index of the SQLite file at `path` (`dbstat`: pages, free space
/// in them included), read on a read-only connection of its own.
fn table_bytes(path: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (name, bytes) = row?;
        Ok((name, u64::try_from(bytes)?))
    })
    .collect()
}

/// Stores the whole dataset in transactions of [`BULK_BATCH`] records.
async fn bulk_load(store: &Store, dataset: &Dataset) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut batch_latencies = Vec::new();
    for chunk in dataset.records.chunks(BULK_BATCH) {
        let begun = Instant::now();
        let mut tx = store.transaction();
        for (collection, key, value) in chunk {
            tx.store(collection, key, value)?;
        }
        tx.commit().await?;
        batch_latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let elapsed = started.elapsed();
    Ok(Measured {
        ops: dataset.records.len() as u64,
        ops_per_s: dataset.records.len() as f64 / elapsed.as_secs_f64(),
        ..Measured::from_latencies(batch_latencies, elapsed)
    })
}

/// Durable single-record updates on `tasks` tasks for `duration`: a random key gets another
/// value of its collection.
///
/// # Errors
/// When a write fails.
pub async fn timed_updates(
    store: &Store,
    dataset: &Arc<Dataset>,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<Latencies> {
    time_tasks(
        tasks,
        duration,
        (store.clone(), Arc::clone(dataset)),
        |(store, dataset), mut rng| async move {
            let (collection, key, value) = dataset.update(&mut rng);
            store.store(collection, key, value).await?;
            Ok(())
        },
    )
    .await
}

impl Target {
    /// Durable single-record updates ([`timed_updates`]).
    async fn writes(&self, tasks: usize, duration: Duration) -> anyhow::Result<Measured> {
        Ok(timed_updates(&self.store, &self.dataset, tasks, duration)
            .await?
            .measured())
    }

    /// Concurrent updates on `tasks` tasks for as long as a maintenance run takes (the first
    /// after the bulk load: it trains the dictionaries and recompresses, decides on a full
    /// vacuum, and takes a backup when one is configured).
    ///
    /// # Errors
    /// When a write fails, or a maintenance step does.
    async fn writes_during_maintenance(
        &self,
        tasks: usize,
    ) -> anyhow::Result<(strongbox::MaintenanceReport, Measured)> {
        let running = Arc::new(AtomicBool::new(true));
        let maintenance = tokio::spawn({
            let (store, running) = (self.store.clone(), Arc::clone(&running));
            async move {
                let report = store.maintenance().await;
                running.store(false, Ordering::Relaxed);
                report
            }
        });
        let latencies = time_tasks_while(
            tasks,
            move || running.load(Ordering::Relaxed),
            (self.store.clone(), Arc::clone(&self.dataset)),
            |(store, dataset), mut rng| async move {
                let (collection, key, value) = dataset.update(&mut rng);
                store.store(collection, key, value).await?;
                Ok(())
            },
        )
        .await?;
        let report = maintenance.await.context("run maintenance")??;
        anyhow::ensure!(
            report.errors.is_empty(),
            "maintenance failed: {}",
            report.errors.join("; ")
        );
        Ok((report, latencies.measured()))
    }

    /// Reads of Zipfian keys through the cache, which the most popular tenth of the keys
    /// warmed first (as much of it as the cache holds): the reads, and the share the cache
    /// served.
    async fn cache_hits(&self, duration: Duration) -> anyhow::Result<(Measured, f64)> {
        for (collection, key, _) in self
            .dataset
            .records
            .iter()
            .take(self.dataset.records.len() / 10)
        {
            self.store
                .retrieve::<serde_json::Value>(collection, key)
                .await?;
        }
        let before = self.store.stats().await?.cache;
        let measured = self.reads(KeyChoice::Zipfian, duration).await?;
        let after = self.store.stats().await?.cache;
        let (hits, misses) = (
            after.hits.saturating_sub(before.hits),
            after.misses.saturating_sub(before.misses),
        );
        let ratio = hits as f64 / (hits + misses).max(1) as f64;
        Ok((measured, ratio))
    }

    /// Reads of keys that exist, on [`READ_TASKS`] tasks.
    async fn reads(&self, choice: KeyChoice, duration: Duration) -> anyhow::Result<Measured> {
        run_for(
            READ_TASKS,
            duration,
            self.clone(),
            move |target, mut rng| async move {
                let index = match choice {
                    KeyChoice::Uniform => rng.random_range(0..target.dataset.records.len()),
                    KeyChoice::Zipfian => target.zipf.sample(&mut rng) as usize,
                };
                let (collection, key, _) = &target.dataset.records[index];
                anyhow::ensure!(
                    target
                        .store
                        .retrieve::<serde_json::Value>(collection, key)
                        .await?
                        .is_some(),
                    "{key} vanished"
                );
                Ok(())
            },
        )
        .await
    }

    /// YCSB-A-like: on Zipfian keys, half reads and half updates.
    async fn mixed(&self, tasks: usize, duration: Duration) -> anyhow::Result<Measured> {
        run_for(
            tasks,
            duration,
            self.clone(),
            |target, mut rng| async move {
                let index = target.zipf.sample(&mut rng) as usize;
                let (collection, key, _) = &target.dataset.records[index];
                if rng.random_bool(0.5) {
                    target
                        .store
                        .retrieve::<serde_json::Value>(collection, key)
                        .await?;
                } else {
                    let value = target.dataset.replacement(index, &mut rng);
                    target.store.store(collection, key, value).await?;
                }
                Ok(())
            },
        )
        .await
    }
}
