//! Concurrent durable writes as the store grows: loads N records (about 0.7 KB of JSON each)
//! into a store file, unless the file exists, then runs 64 tasks writing random existing keys
//! for three rounds of 4 seconds and prints the mean rate. Run it at 20,000 and 1,000,000
//! records, alternating, several times (the machine is shared and noisy):
//!
//!     cargo run --release -p strongbox-store --example writes_at_scale -- 1000000 /tmp/s1m.db
//!     cargo run --release -p strongbox-store --example writes_at_scale -- 20000 /tmp/s20k.db
//!
//! With the `postgres` feature, a `postgres://` URL in place of the file runs the same writes
//! on that (empty) database, which it loads first:
//!
//!     cargo run --release -p strongbox-store --features postgres --example writes_at_scale -- \
//!         8000 postgres://postgres@127.0.0.1:5432/writes_at_scale

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strongbox::{Config, Store};

/// The value of record `i`: an id, a name, a count and 60 pseudo-random words.
fn value(i: u64) -> serde_json::Value {
    let mut words = String::new();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..60 {
        x = xorshift(x);
        words.push_str(&format!("{:x} ", x % 100_000));
    }
    serde_json::json!({"id": i, "name": format!("player-{i}"), "chips": i % 1000, "notes": words})
}

/// A PostgreSQL store's configuration (its database is loaded every run).
#[cfg(feature = "postgres")]
fn postgres_config(url: &str) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::postgres(url.to_owned()))
}

#[cfg(not(feature = "postgres"))]
fn postgres_config(_url: &str) -> Result<Config, Box<dyn std::error::Error>> {
    Err("this build has no PostgreSQL support: add --features postgres".into())
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().ok_or("give N")?.parse()?;
    let path = args.next().ok_or("give a store file")?;
    let is_postgres = path.starts_with("postgres://") || path.starts_with("postgresql://");
    let (is_new, mut config) = if is_postgres {
        (true, postgres_config(&path)?)
    } else {
        (!std::path::Path::new(&path).exists(), Config::new(&path))
    };
    config.maintenance_interval_secs = 0;
    let store = Store::open(config).await?;
    if is_new {
        let started = Instant::now();
        for first in (0..records).step_by(1000) {
            let mut tx = store.transaction();
            for i in first..(first + 1000).min(records) {
                tx.store("players", &format!("p{i:08}"), &value(i))?;
            }
            tx.commit().await?;
        }
        println!(
            "loaded {records} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let mut rates = Vec::new();
    for round in 0..3u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks: Vec<tokio::task::JoinHandle<strongbox::Result<()>>> = Vec::new();
        for task in 0..64u64 {
            let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
            tasks.push(tokio::spawn(async move {
                let mut x = (task + 1) * 0x9E37_79B9 + round * 7;
                while !stop.load(Ordering::Relaxed) {
                    x = xorshift(x);
                    let i = x % records;
                    store
                        .store("players", &format!("p{i:08}"), &value(i + x % 7))
                        .await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await??;
        }
        rates.push(done.load(Ordering::Relaxed) as f64 / 4.0);
    }
    println!(
        "{records} records: {:.0} durable writes/s (64 tasks; rounds {:?})",
        rates.iter().sum::<f64>() / 3.0,
        rates.iter().map(|rate| rate.round()).collect::<Vec<_>>()
    );
    store.close().await?;
    Ok(())
}
