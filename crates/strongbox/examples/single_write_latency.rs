//! The latency of durable writes from a lone caller: 4,500 sequential `store` calls of a
//! 0.7 KB JSON value over 500 keys, p50 and p90 in microseconds. It compares the library alone
//! across commits, without any benchmark harness (the file builds against older trees too):
//!
//!     cargo run --release -p strongbox-store --example single_write_latency

use std::time::Instant;

#[tokio::main]
async fn main() -> strongbox::Result<()> {
    let dir = tempfile::tempdir().map_err(|source| strongbox::Error::Io {
        action: "create a temporary directory".into(),
        source,
    })?;
    let store =
        strongbox::Store::open(strongbox::Config::new(dir.path().join("latency.db"))).await?;
    let value = serde_json::json!({"player": "p", "chips": 1000, "bets": [1, 2, 3], "note": "x".repeat(600)});
    for i in 0..200 {
        store.store("warm", &format!("k{i}"), &value).await?;
    }
    let mut micros = Vec::with_capacity(4_500);
    for round in 0..3u32 {
        for i in 0..1_500u32 {
            let mut changed = value.clone();
            changed["chips"] = serde_json::json!(i + round * 100_000);
            let started = Instant::now();
            store
                .store("players", &format!("p{:05}", i % 500), &changed)
                .await?;
            micros.push(started.elapsed().as_micros());
        }
    }
    micros.sort_unstable();
    println!(
        "p50 {} us, p90 {} us, {} writes",
        micros[micros.len() / 2],
        micros[micros.len() * 9 / 10],
        micros.len()
    );
    store.close().await
}
