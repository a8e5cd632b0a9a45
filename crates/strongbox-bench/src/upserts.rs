//! The PostgreSQL engine's own ceiling for concurrent durable writes on this server, the
//! baseline of issue 15: what `pgbench` measures with `--concurrency` clients (64 by default),
//! each transaction one `INSERT … ON CONFLICT DO UPDATE` of a 640-byte value into a
//! `(collection, key)` table of 8,000 rows, each client on its own connection, with the
//! server's default durability (`synchronous_commit = on`). Strongbox's concurrent durable
//! writes on PostgreSQL (`write`) are compared with it in the same run: [`paired`] runs
//! the two back to back, [`ROUNDS`] times, and the comparison is the median of the rounds'
//! ratios, since on a shared machine the load of other processes changes between the two far
//! more than either changes on its own (in four runs on 3 December 2026 the upserts alone
//! ranged from 5,547 to 12,887/s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::RngExt as _;
use serde::Serialize;
use strongbox::{Config, Store};
use tokio_postgres::NoTls;

use crate::dataset::Dataset;
use crate::ours::timed_updates;
use crate::workload::{Measured, median_of_ratios, rng_for};

/// Rounds of [`paired`].
pub const ROUNDS: usize = 3;

/// One round of [`paired`]: our concurrent writes, then the upserts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Round {
    /// Our durable single-record updates from as many tasks as the upserts' connections.
    pub write: Measured,
    /// The engine's upserts ([`run_baseline`]).
    pub upsert: Measured,
}

/// Our concurrent durable writes on the store at `url` (already holding `dataset`: the bench's
/// PostgreSQL workloads loaded it; opened with the default settings) and the engine's upserts
/// on the same server, each for `duration` from `concurrency` tasks, back to back, [`ROUNDS`]
/// times.
///
/// # Errors
/// When the store cannot be opened, a write fails or the upserts do.
pub async fn paired(
    url: &str,
    dataset: &Arc<Dataset>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Round>> {
    let store = Store::open(Config::postgres(url.to_owned()))
        .await
        .context("open the PostgreSQL store again")?;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let write = timed_updates(&store, dataset, concurrency.max(1), duration)
            .await
            .context("run our writes beside the upserts")?
            .measured();
        let upsert = run_baseline(url, concurrency, duration)
            .await
            .context("run the engine's own upserts")?;
        rounds.push(Round { write, upsert });
    }
    store.close().await?;
    Ok(rounds)
}

/// The median of the rounds' ratios (ours / the upserts'), `None` without rounds.
pub fn median_ratio(rounds: &[Round]) -> Option<f64> {
    median_of_ratios(
        rounds
            .iter()
            .map(|round| (round.write.ops_per_s, round.upsert.ops_per_s)),
    )
}

/// The upserts of every round as one measurement: their operations over their time; the
/// latencies' percentiles are the rounds' highest.
pub fn all_upserts(rounds: &[Round]) -> Measured {
    let upserts: Vec<Measured> = rounds.iter().map(|round| round.upsert).collect();
    Measured::combine(&upserts)
}

/// Rows of the table written.
const ROWS: u64 = 8_000;

/// Bytes of each value written.
const VALUE_BYTES: usize = 640;

/// The table, created afresh and filled.
const SETUP: &str = r#"
    DROP TABLE IF EXISTS strongbox_bench_upserts;
    CREATE TABLE strongbox_bench_upserts (
        collection TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (collection, key)
    );
    INSERT INTO strongbox_bench_upserts
        SELECT 'bench', 'k' || n, decode(repeat('ab', 640), 'hex')
        FROM generate_series(1, 8000) AS n; -- ROWS
"#;

/// One write.
const UPSERT: &str = "
    INSERT INTO strongbox_bench_upserts (collection, key, value) VALUES ('bench', $1, $2)
    ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value";

/// Runs the upserts from `clients` connections for `duration`; drops the table after.
///
/// # Errors
/// When the server cannot be reached or a statement fails.
pub async fn run_baseline(
    url: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let admin = connect(url).await?;
    admin
        .batch_execute(SETUP)
        .await
        .context("create the upserts' table")?;
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        connections.push(connect(url).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections.len());
    for (task, client) in connections.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(UPSERT).await?;
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut rng = rng_for(task, n);
                let key = format!("k{}", rng.random_range(1..=ROWS));
                let value: Vec<u8> = (0..VALUE_BYTES).map(|_| rng.random()).collect();
                let begun = Instant::now();
                client.execute(&statement, &[&key, &value]).await?;
                latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    admin
        .batch_execute("DROP TABLE strongbox_bench_upserts")
        .await
        .context("drop the upserts' table")?;
    Ok(Measured::from_latencies(latencies, elapsed))
}

/// A connection of its own, its driver task spawned.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connect to PostgreSQL for the upserts")?;
    tokio::spawn(connection);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(write: f64, upsert: f64) -> Round {
        let measured = |ops_per_s: f64| Measured {
            ops: (ops_per_s * 2.0) as u64,
            ops_per_s,
            p50_us: 10,
            p99_us: ops_per_s as u64,
        };
        Round {
            write: measured(write),
            upsert: measured(upsert),
        }
    }

    #[test]
    fn the_ratio_is_the_median_of_the_rounds_ratios() {
        let rounds = [round(100.0, 400.0), round(300.0, 100.0), round(50.0, 100.0)];
        assert_eq!(median_ratio(&rounds), Some(0.5));
        assert_eq!(median_ratio(&rounds[..2]), Some((0.25 + 3.0) / 2.0));
        assert_eq!(median_ratio(&[]), None);
        // A round without upserts has no ratio.
        assert_eq!(median_ratio(&[round(10.0, 0.0)]), None);
    }

    #[test]
    fn all_upserts_add_operations_over_time() {
        // 800 upserts in 2 s, then 200 in 2 s: 250/s.
        let total = all_upserts(&[round(1.0, 400.0), round(1.0, 100.0)]);
        assert_eq!(total.ops, 1_000);
        assert!((total.ops_per_s - 250.0).abs() < 1e-9);
        assert_eq!(total.p99_us, 400);
    }
}
