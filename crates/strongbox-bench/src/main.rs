//! `strongbox-bench`: Strongbox against the original BitCraps approach (serde_json, gzip and
//! one transaction per write, with its cache), on the same data, in one run.
//!
//! The data is a generated BitCraps-like game world (`generate`: players, settings,
//! inventories, game sessions with their bets and rolls, transactions, chat, leaderboards),
//! the same records in every run, 20,000 by default (`--records N`); or `--dataset FILE`, JSON
//! lines. `--write-dataset FILE` writes the data as JSON lines (for `strongbox import`) and
//! stops.
//!
//! Workloads, each timed for `--duration` seconds on a fresh database in a temporary directory,
//! whose cache holds a tenth of the dataset's JSON bytes (at least 1 MiB) and which takes a
//! backup into a repository beside it when maintenance runs: bulk load (transactions of 1,000
//! records); durable single-record stores from `--concurrency` tasks (updates: a random key
//! gets another value of its collection) with no maintenance running, then the same updates for
//! as long as the first maintenance run takes (it trains what training while writing left,
//! recompresses, decides on a full vacuum and takes the backup), then a second maintenance run
//! alone, after which the file is measured; durable single-record stores from one task and
//! from `--concurrency` tasks; cache hits (8 tasks, Zipfian keys, the most popular tenth of the
//! keys read once first); cold reads with the cache off (8 tasks, uniform and Zipfian 0.99
//! keys); a YCSB-A-like 50/50 read/update mix on Zipfian keys (`--concurrency` tasks). The
//! original approach (see [`seed`]) runs its writes, its cold reads (one connection) and its
//! cache hits (8 threads) on the same data, and every figure of ours is also given as a ratio
//! against its counterpart. `--postgres URL` adds the same workloads on an (empty) PostgreSQL
//! database.
//!
//! Two more workloads each have a baseline of their own, in the same run:
//! - transfers ([`transfer`]): `--concurrency` tasks (64 by default) move money between 10,000
//!   accounts drawn from a Zipfian distribution (0.99), each transfer a `Store::transact` that
//!   reads two balances and writes two, for `--duration` seconds; against the same transfers on
//!   rusqlite written the obvious way (`BEGIN IMMEDIATE`, two `SELECT`s, two `UPDATE`s,
//!   `COMMIT`; WAL, `synchronous=FULL`, a busy timeout) on `--concurrency` threads, each with its
//!   own connection; the two in turns, three rounds of `--duration` each, compared by the
//!   median of the rounds' ratios. Both check afterwards that the balances still add
//!   up, and the bench fails if they do not.
//! - scan ([`scan`]): a collection of `--scan-records` records (100,000 by default, the
//!   dataset's values copied) read through `Collection::scan(Scan::all())` and with one
//!   `retrieve` per key in key order, from one task, both with the cache off, in turns for three
//!   rounds (the medians are reported).
//! - the change feed ([`feed`]): the concurrent durable updates through a handle with the feed
//!   off (`Config::with_change_feed(false)`) and one with it on, in turns, for `--duration`
//!   each in all; then the same updates for `--duration` while a subscriber on the writing
//!   handle and one on a second handle (which polls) receive them: their lag, from a write's
//!   acknowledgement to its receipt.
//!
//! `--json` prints one object whose field names are stable: `records`, `raw_bytes`,
//! `file_bytes`, `file_bytes_per_record`, `file_table_bytes` (SQLite: each table's and index's
//! bytes in that file, by name, from `dbstat`), `seed_file_bytes`, `peak_rss_bytes` (the process's
//! peak), `store_rss_bytes` (the peak of our SQLite workloads above the memory the process held
//! before them: the dataset), `cache_capacity_bytes`, `read_hit_ratio` (the share of
//! `read_hit`'s reads the cache served), `maintenance_ms`, `maintenance_steps` (`[name, ms]`
//! pairs) and `dictionaries_trained` (the maintenance run after the bulk load), and for each
//! workload `<name>_ops_per_s`, `<name>_p50_us`, `<name>_p99_us` with names `bulk_load`,
//! `write` (concurrent), `write_without_maintenance`, `write_during_maintenance`,
//! `write_single`, `read_hit`, `read_cold` (uniform), `read_cold_zipf`, `mixed`,
//! `seed_bulk_load`, `seed_write`, `seed_read` (the original approach's cold reads: a select,
//! gunzip and decode) and `seed_read_hit` (its cache hits: gunzip and decode); `ratios`
//! (ours / the original's); and `postgres` (the same workload fields, or null). The transfers
//! give `transfer_ops_per_s` (committed transfers), `transfer_p50_us` and `transfer_p99_us` (a
//! transfer's latency, its retries included), `transfer_retry_rate` (closure runs that did not
//! commit, per committed transfer), `transfer_accounts`, `transfer_rounds` (each round's
//! `[ours, rusqlite's]` per second), and `baseline_transfer_ops_per_s`,
//! `baseline_transfer_p50_us`, `baseline_transfer_p99_us` (rusqlite); the scan gives
//! `scan_records`, `scan_rounds`, `scan_values_per_s` and `scan_retrieve_values_per_s`; the
//! change feed `feed_write_off_*` and `feed_write_on_*` (`_ops_per_s`, `_p50_us`, `_p99_us`:
//! updates), `feed_lag_*` and `feed_lag_polled_*` (`_ops_per_s`: changes received per second
//! of the run; `_p50_us`, `_p99_us`: their lag). Their ratios are
//! `ratios.transfer` (ours / rusqlite's), `ratios.transfer_to_write` (our transfers / our
//! concurrent writes, `write`), `ratios.scan` (scan / retrieve), `ratios.feed_write`
//! (updates with the feed on / off) and `ratios.write_p99_during_maintenance` (the p99 of
//! `write_during_maintenance` over that of `write_without_maintenance`). With `--postgres`, `postgres.feed` holds the same
//! figures (`write_off`, `write_on`, `lag`, `lag_polled`). The `seed_`
//! prefix names the original approach. `ratios.read_hit` compares cache hits with the
//! original's cache hits (`seed_read_hit`); before `seed_read_hit` existed it compared them with
//! the original's uncached reads. `ratios.read_cold` and `ratios.read_cold_zipf` compare with
//! `seed_read`, as before.
//!
//! With `--postgres`, the engine's own ceiling ([`upserts`]): `--concurrency` connections each
//! running one-statement upsert transactions, as `pgbench` would, is `postgres.engine_upsert`
//! (`ops_per_s`, `p50_us`, `p99_us`; all rounds together), and our concurrent durable writes
//! are compared with it (`ratios.postgres_write_to_upsert`). The two are measured back to
//! back, in `upserts::ROUNDS` rounds of our concurrent writes then the upserts
//! (`postgres.upsert_rounds`: `write` and `upsert` of each round), and the ratio is the median
//! of the rounds' ratios, so that a noisy neighbour slows both sides of a round alike.
//!
//! `growth.py` beside this crate runs the bench at several `--records` and draws the table and
//! the plot of `docs/growth/`.
//!
//! It is its own binary so that the product, `strongbox`, carries neither the baseline nor its
//! dependencies (rusqlite directly, flate2, BLAKE3): run it with
//! `cargo run --release -p strongbox-bench`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod dataset;
mod feed;
mod generate;
mod ours;
mod report;
mod scan;
mod seed;
mod transfer;
mod upserts;
mod workload;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use strongbox::{Config, Store};

use crate::dataset::Dataset;
use crate::report::Report;
use crate::workload::{peak_rss_bytes, reset_peak_rss, rss_bytes};

/// The allocator of the `strongbox` binary, so that the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmark Strongbox against the original BitCraps approach (gzip, one transaction per
/// write, its cache), on a generated game data set or a JSON lines file, in fresh temporary
/// databases.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "strongbox-bench", version)]
pub struct BenchArgs {
    /// JSON lines to load instead of the generated data: one `{"collection": ..., "key": ...,
    /// "value": ...}` per line.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Records of the generated data set (players, game sessions, bets, chat...; the same
    /// records every run).
    #[arg(long, value_name = "N", default_value_t = generate::DEFAULT_RECORDS,
          conflicts_with = "dataset")]
    pub records: usize,
    /// Write the data set as JSON lines to FILE (for `strongbox import`) and stop.
    #[arg(long, value_name = "FILE")]
    pub write_dataset: Option<PathBuf>,
    /// Tasks for the concurrent write, mixed and transfer workloads (and threads, each with its
    /// own connection, for the transfers' rusqlite baseline).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Records of the collection the scan workload reads (the dataset's values, copied).
    #[arg(long, value_name = "N", default_value_t = scan::DEFAULT_RECORDS)]
    pub scan_records: usize,
    /// Seconds each timed workload runs.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Leave dictionary training to the first maintenance run after the bulk load
    /// (`Config::train_while_writing = false`) instead of training while the load writes.
    #[arg(long)]
    pub no_train_while_writing: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run the workloads on this PostgreSQL database (it should be empty; the bench
    /// writes the dataset into it).
    #[arg(long)]
    pub postgres: Option<String>,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Nothing sensible is left to do if standard error is gone too.
            let _ = writeln!(std::io::stderr().lock(), "strongbox-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads or generates the dataset, runs every workload (ours, the original approach's,
/// PostgreSQL's when asked) and prints the report.
///
/// # Errors
/// When the dataset cannot be read, a database cannot be opened or a workload fails.
async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dataset = match &args.dataset {
        Some(path) => Dataset::load(path)?,
        None => Dataset::generate(args.records)?,
    };
    if let Some(path) = &args.write_dataset {
        return dataset.write(path);
    }
    let dataset = Arc::new(dataset);
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let cache_capacity_bytes = (dataset.raw_bytes / 10).max(1 << 20);
    let with_budget = |config: Config, backups: &str| {
        bench_config(config, args, cache_capacity_bytes, dir.path().join(backups))
    };
    let config = with_budget(Config::new(dir.path().join("strongbox.db")), "backups");
    if !args.json {
        announce(args, &dataset);
    }
    if args.duration < transfer::PACED_SECONDS {
        eprintln!(
            "note: rounds under {} s flatter ratios.transfer: the rusqlite baseline's threads \
             take more than a second to reach their pace",
            transfer::PACED_SECONDS
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
    // Our workloads' memory is measured from here: the dataset is in memory already.
    reset_peak_rss();
    let rss_before = rss_bytes();
    let transfer_path = dir.path().join("transfer.db");
    let ours = ours::run(
        config,
        &dataset,
        args.concurrency,
        duration,
        args.scan_records,
        Some(&transfer_path),
    )
    .await
    .context("run the Strongbox workloads")?;
    let store_rss_bytes = peak_rss_bytes().saturating_sub(rss_before);
    let seed_path = dir.path().join("seed.db");
    let seed_dataset = Arc::clone(&dataset);
    let seed = tokio::task::spawn_blocking(move || seed::run(&seed_path, &seed_dataset, duration))
        .await
        .context("run the original approach's workloads")??;
    let postgres = match &args.postgres {
        Some(url) => Some(
            ours::run(
                with_budget(Config::postgres(url.clone()), "backups-postgres"),
                &dataset,
                args.concurrency,
                duration,
                args.scan_records,
                None,
            )
            .await
            .context("run the PostgreSQL workloads")?,
        ),
        None => None,
    };
    let postgres = match (postgres, &args.postgres) {
        (Some(mut figures), Some(url)) => {
            let rounds = upserts::paired(url, &dataset, args.concurrency, duration).await?;
            figures.engine_upsert = Some(upserts::all_upserts(&rounds));
            figures.upsert_rounds = rounds;
            Some(figures)
        }
        _ => None,
    };
    let report = Report::new(
        &dataset,
        cache_capacity_bytes,
        store_rss_bytes,
        ours,
        seed,
        postgres,
    );
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

/// A store's configuration for the bench: the cache a tenth of the data, backups into
/// `backups` when maintenance runs, training while writing unless turned off.
fn bench_config(
    mut config: Config,
    args: &BenchArgs,
    cache_capacity_bytes: u64,
    backups: PathBuf,
) -> Config {
    config.cache_capacity_bytes = cache_capacity_bytes;
    config.backup_repository = Some(backups);
    config.backup_interval_secs = 86_400;
    config.train_while_writing = !args.no_train_while_writing;
    config
}

/// Says on standard error what the run measures.
fn announce(args: &BenchArgs, dataset: &Dataset) {
    let source = match &args.dataset {
        Some(path) => path.display().to_string(),
        None => "generated game data".to_owned(),
    };
    eprintln!(
        "{} records ({source}), {} bytes of JSON values; {} s per workload",
        dataset.records.len(),
        dataset.raw_bytes,
        args.duration
    );
}
