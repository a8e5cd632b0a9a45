//! The PostgreSQL engine's own ceiling for concurrent durable writes on this server, the
//! baseline of issue 15: what `pgbench` measures with `--concurrency` clients (64 by default),
//! each transaction one `INSERT … ON CONFLICT DO UPDATE` of a 640-byte value into a
//! `(collection, key)` table of 8,000 rows, each client on its own connection, with the
//! server's default durability (`synchronous_commit = on`). Strongbox's concurrent durable
//! writes on PostgreSQL (`write`) are compared with it in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::RngExt as _;
use tokio_postgres::NoTls;

use crate::workload::{Measured, rng_for};

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
