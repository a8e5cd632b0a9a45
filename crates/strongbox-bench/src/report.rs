//! The report: a table for people, or one JSON object whose field names are stable (listed in
//! the crate's documentation). The table calls the baseline what it is: the original BitCraps
//! approach; the JSON keeps its `seed_` names.

use serde_json::{Map, Value, json};

use crate::dataset::Dataset;
use crate::feed::FeedFigures;
use crate::ours::Figures;
use crate::scan::ScanFigures;
use crate::seed::SeedFigures;
use crate::transfer::ACCOUNTS;
use crate::workload::{Measured, median_of_ratios, peak_rss_bytes};

/// Everything measured, ready to print.
pub struct Report {
    raw_bytes: u64,
    records: u64,
    cache_capacity_bytes: u64,
    peak_rss_bytes: u64,
    /// Peak resident memory of our SQLite workloads above what the process held before them
    /// (the dataset).
    store_rss_bytes: u64,
    ours: Figures,
    seed: SeedFigures,
    /// The transfers on rusqlite, the obvious way (run in turns with ours).
    baseline_transfer: Measured,
    postgres: Option<Figures>,
}

impl Report {
    /// Gathers the figures, with the dataset's size and this process's peak memory.
    pub fn new(
        dataset: &Dataset,
        cache_capacity_bytes: u64,
        store_rss_bytes: u64,
        ours: Figures,
        seed: SeedFigures,
        postgres: Option<Figures>,
    ) -> Self {
        let baseline_transfer = ours.transfer_baseline.unwrap_or_default();
        Report {
            raw_bytes: dataset.raw_bytes,
            records: dataset.records.len() as u64,
            cache_capacity_bytes,
            peak_rss_bytes: peak_rss_bytes(),
            store_rss_bytes,
            ours,
            seed,
            baseline_transfer,
            postgres,
        }
    }

    /// (name, ours, the original approach's figure it is compared with): writes with its
    /// writes, cache hits with its cache hits, cold reads with its database reads.
    fn rows(&self) -> Vec<(&'static str, Measured, Option<Measured>)> {
        let seed = &self.seed;
        let baselines = [
            Some(seed.bulk_load),
            Some(seed.write),
            None,
            None,
            Some(seed.write),
            Some(seed.read_hit),
            Some(seed.read),
            Some(seed.read),
            None,
        ];
        self.ours
            .workloads()
            .into_iter()
            .zip(baselines)
            .map(|((name, ours), baseline)| (name, ours, baseline))
            .collect()
    }

    /// The `--json` report.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        let mut put = |name: &str, measured: &Measured| {
            object.insert(format!("{name}_ops_per_s"), json!(measured.ops_per_s));
            object.insert(format!("{name}_p50_us"), json!(measured.p50_us));
            object.insert(format!("{name}_p99_us"), json!(measured.p99_us));
        };
        for (name, measured, _) in self.rows() {
            put(name, &measured);
        }
        put("seed_bulk_load", &self.seed.bulk_load);
        put("seed_write", &self.seed.write);
        put("seed_read", &self.seed.read);
        put("seed_read_hit", &self.seed.read_hit);
        put("transfer", &self.ours.transfer);
        put("baseline_transfer", &self.baseline_transfer);
        let feed = &self.ours.feed;
        put("feed_write_off", &feed.write_off);
        put("feed_write_on", &feed.write_on);
        put("feed_lag", &feed.lag);
        put("feed_lag_polled", &feed.lag_polled);
        object.insert("ratios".into(), Value::Object(self.ratios()));
        let ours = &self.ours;
        let totals = [
            ("transfer_retry_rate", json!(ours.transfer_retry_rate)),
            ("transfer_accounts", json!(ACCOUNTS)),
            ("transfer_rounds", json!(ours.transfer_rounds)),
            ("scan_records", json!(ours.scan.records)),
            ("scan_rounds", json!(ours.scan.rounds)),
            ("scan_values_per_s", json!(ours.scan.values_per_s)),
            (
                "scan_retrieve_values_per_s",
                json!(ours.scan.retrieve_values_per_s),
            ),
            ("records", json!(self.records)),
            ("raw_bytes", json!(self.raw_bytes)),
            ("file_bytes", json!(ours.file_bytes)),
            (
                "file_bytes_per_record",
                json!(ratio(ours.file_bytes as f64, self.records as f64)),
            ),
            ("file_table_bytes", json!(ours.file_tables)),
            ("read_hit_ratio", json!(ours.read_hit_ratio)),
            ("maintenance_ms", json!(ours.maintenance_ms)),
            ("maintenance_steps", json!(ours.maintenance_steps)),
            ("dictionaries_trained", json!(ours.dictionaries_trained)),
            ("seed_file_bytes", json!(self.seed.file_bytes)),
            ("peak_rss_bytes", json!(self.peak_rss_bytes)),
            ("store_rss_bytes", json!(self.store_rss_bytes)),
            ("cache_capacity_bytes", json!(self.cache_capacity_bytes)),
            ("postgres", json!(self.postgres)),
        ];
        for (name, value) in totals {
            object.insert(name.into(), value);
        }
        Value::Object(object)
    }

    /// Ours over the original's: throughput of each workload that has a baseline, and file size;
    /// then our transfers over rusqlite's and over our concurrent writes, scan over retrieve,
    /// and writes with the change feed on over writes with it off.
    fn ratios(&self) -> Map<String, Value> {
        let mut ratios = Map::new();
        for (name, measured, baseline) in self.rows() {
            if let Some(baseline) = baseline {
                ratios.insert(
                    name.to_owned(),
                    json!(ratio(measured.ops_per_s, baseline.ops_per_s)),
                );
            }
        }
        ratios.insert(
            "file_bytes".into(),
            json!(ratio(
                self.ours.file_bytes as f64,
                self.seed.file_bytes as f64
            )),
        );
        let ours = &self.ours;
        let others = [
            ("transfer", self.transfer_ratio()),
            (
                "transfer_to_write",
                ratio(ours.transfer.ops_per_s, ours.write.ops_per_s),
            ),
            (
                "scan",
                ratio(ours.scan.values_per_s, ours.scan.retrieve_values_per_s),
            ),
            (
                "feed_write",
                ratio(ours.feed.write_on.ops_per_s, ours.feed.write_off.ops_per_s),
            ),
            (
                "write_p99_during_maintenance",
                ratio(
                    ours.write_during_maintenance.p99_us as f64,
                    ours.write_without_maintenance.p99_us as f64,
                ),
            ),
        ];
        for (name, value) in others {
            ratios.insert(name.into(), json!(value));
        }
        if let Some(postgres) = &self.postgres
            && let Some(median) = crate::upserts::median_ratio(&postgres.upsert_rounds)
        {
            ratios.insert("postgres_write_to_upsert".into(), json!(median));
        }
        ratios
    }

    /// Prints the table on standard output.
    pub fn print(&self) {
        println!(
            "Strongbox against the original BitCraps approach (gzip, one transaction per write, \
             its cache): same data, same run"
        );
        println!(
            "{:<16} {:>12} {:>9} {:>9} {:>14} {:>8}",
            "workload", "ops/s", "p50 µs", "p99 µs", "BitCraps ops/s", "ratio"
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
                "{name:<16} {:>12.0} {:>9} {:>9} {seed:>14} {ratio_text:>8}",
                measured.ops_per_s, measured.p50_us, measured.p99_us
            );
        }
        println!(
            "{:<16} {:>12} {:>9} {:>9} {:>14} {:>7.2}x",
            "file bytes",
            self.ours.file_bytes,
            "",
            "",
            self.seed.file_bytes,
            ratio(self.ours.file_bytes as f64, self.seed.file_bytes as f64)
        );
        println!(
            "read_hit is compared with the original's cache hits (gunzip and decode), the cold \
             reads with its database reads (one connection)"
        );
        println!(
            "read_hit: Zipfian keys, the cache a tenth of the raw data ({} MiB); it served {:.1}% \
             of them",
            self.cache_capacity_bytes >> 20,
            self.ours.read_hit_ratio * 100.0
        );
        let steps: Vec<String> = self
            .ours
            .maintenance_steps
            .iter()
            .filter(|(_, ms)| *ms > 0)
            .map(|(name, ms)| format!("{name} {ms}"))
            .collect();
        println!(
            "file measured after the bulk load and one maintenance run under the concurrent \
             writes ({} ms, {} dictionaries trained; steps in ms: {})",
            self.ours.maintenance_ms,
            self.ours.dictionaries_trained,
            steps.join(", ")
        );
        println!(
            "write p99 during maintenance / without: {:.2}x (the target: at most 2); file bytes \
             per record {:.0}",
            ratio(
                self.ours.write_during_maintenance.p99_us as f64,
                self.ours.write_without_maintenance.p99_us as f64
            ),
            ratio(self.ours.file_bytes as f64, self.records as f64)
        );
        println!(
            "raw JSON {} bytes; peak RSS of our workloads above the dataset's {} MiB (cache \
             budget {} MiB); process peak {} MiB",
            self.raw_bytes,
            self.store_rss_bytes >> 20,
            self.cache_capacity_bytes >> 20,
            self.peak_rss_bytes >> 20,
        );
        self.print_transfer_and_scan();
        if let Some(postgres) = &self.postgres {
            self.print_postgres(postgres);
        }
    }

    /// Our transfers over rusqlite's: the median of the rounds' ratios (the two ran in turns).
    fn transfer_ratio(&self) -> f64 {
        median_of_ratios(self.ours.transfer_rounds.iter().copied()).unwrap_or(0.0)
    }

    /// Prints the transfers against rusqlite's and against our writes, and the scan against
    /// retrieves.
    fn print_transfer_and_scan(&self) {
        let (ours, baseline) = (&self.ours, &self.baseline_transfer);
        println!(
            "\ntransfers: read 2 balances, write 2, serializable; {ACCOUNTS} Zipfian accounts, \
             same transfers on both sides"
        );
        println!(
            "{:<24} {:>12} {:>9} {:>9}",
            "", "transfers/s", "p50 µs", "p99 µs"
        );
        for (name, measured) in [
            ("Store::transact", &ours.transfer),
            ("rusqlite BEGIN IMMEDIATE", baseline),
        ] {
            println!(
                "{name:<24} {:>12.0} {:>9} {:>9}",
                measured.ops_per_s, measured.p50_us, measured.p99_us
            );
        }
        println!(
            "ratio {:.2}x rusqlite's (the median of {} rounds in turns); {:.2}x our concurrent \
             durable writes (write); retry rate {:.3} (closure runs that did not commit, per \
             transfer)",
            self.transfer_ratio(),
            ours.transfer_rounds.len(),
            ratio(ours.transfer.ops_per_s, ours.write.ops_per_s),
            ours.transfer_retry_rate
        );
        print_scan(&ours.scan);
        print_feed(&ours.feed);
    }

    /// Prints PostgreSQL's figures against SQLite's.
    fn print_postgres(&self, postgres: &Figures) {
        println!("\nPostgreSQL (same workloads) against SQLite:");
        for ((name, pg), (_, sqlite)) in postgres.workloads().into_iter().zip(self.ours.workloads())
        {
            println!(
                "{name:<16} {:>12.0} {:>9} {:>9} {:>12.0} {:>7.2}x",
                pg.ops_per_s,
                pg.p50_us,
                pg.p99_us,
                sqlite.ops_per_s,
                ratio(pg.ops_per_s, sqlite.ops_per_s)
            );
        }
        let (pg, sqlite) = (&postgres.transfer, &self.ours.transfer);
        println!(
            "{:<16} {:>12.0} {:>9} {:>9} {:>12.0} {:>7.2}x  (retry rate {:.3})",
            "transfer",
            pg.ops_per_s,
            pg.p50_us,
            pg.p99_us,
            sqlite.ops_per_s,
            ratio(pg.ops_per_s, sqlite.ops_per_s),
            postgres.transfer_retry_rate
        );
        println!("{:<16} {:>12}", "table bytes", postgres.file_bytes);
        if !postgres.upsert_rounds.is_empty() {
            println!(
                "\nconcurrent durable writes against the engine's own upserts (pgbench-like, as \
                 many connections), back to back:"
            );
            for (n, round) in postgres.upsert_rounds.iter().enumerate() {
                println!(
                    "round {:<10} {:>12.0} {:>9} {:>9} {:>12.0} {:>7.2}x",
                    n + 1,
                    round.write.ops_per_s,
                    round.write.p50_us,
                    round.write.p99_us,
                    round.upsert.ops_per_s,
                    ratio(round.write.ops_per_s, round.upsert.ops_per_s)
                );
            }
            if let Some(median) = crate::upserts::median_ratio(&postgres.upsert_rounds) {
                println!("{:<16} {:>56.2}x", "median", median);
            }
        }
        print_scan(&postgres.scan);
        print_feed(&postgres.feed);
    }
}

/// Prints the change feed's cost (writes with it off and on) and a subscriber's lag.
fn print_feed(feed: &FeedFigures) {
    println!(
        "\nchange feed: concurrent durable updates through a handle with the feed off and one \
         with it on, in turns (off, on, on, off)"
    );
    println!(
        "{:<32} {:>12} {:>9} {:>9}",
        "", "updates/s", "p50 µs", "p99 µs"
    );
    for (name, measured) in [("feed off", &feed.write_off), ("feed on", &feed.write_on)] {
        print_row(name, measured);
    }
    println!(
        "ratio on/off {:.2}x (the target: at least 0.90)",
        ratio(feed.write_on.ops_per_s, feed.write_off.ops_per_s)
    );
    println!(
        "subscriber lag under the same updates, from a write's acknowledgement to its receipt \
         (the target: p99 under 50,000 µs on SQLite)"
    );
    println!(
        "{:<32} {:>12} {:>9} {:>9}",
        "", "changes/s", "p50 µs", "p99 µs"
    );
    for (name, measured) in [
        ("on the writing handle", &feed.lag),
        ("on another handle (polls)", &feed.lag_polled),
    ] {
        print_row(name, measured);
    }
}

/// Prints one row of a table of rates and latencies.
fn print_row(name: &str, measured: &Measured) {
    println!(
        "{name:<32} {:>12.0} {:>9} {:>9}",
        measured.ops_per_s, measured.p50_us, measured.p99_us
    );
}

/// Prints a scan against retrieves.
fn print_scan(scan: &ScanFigures) {
    println!(
        "scan of {} records, cache off, one task, median of {} rounds: {:.0} values/s; one \
         retrieve per key in key order: {:.0} values/s; ratio {:.2}x",
        scan.records,
        scan.rounds,
        scan.values_per_s,
        scan.retrieve_values_per_s,
        ratio(scan.values_per_s, scan.retrieve_values_per_s)
    );
}

/// `ours / theirs`, or 0 when there is nothing to compare with.
fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs > 0.0 { ours / theirs } else { 0.0 }
}
