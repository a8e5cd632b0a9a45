//! End-to-end tests of the `strongbox-bench` binary: on a dataset file, and on the game data
//! it generates itself.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::{Value, json};

#[test]
fn the_bench_prints_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..300)
        .map(|i| {
            let collection = if i % 2 == 0 { "players" } else { "chat" };
            let value = json!({"n": i, "text": "gg ".repeat(i % 40)});
            format!(
                "{}\n",
                json!({"collection": collection, "key": format!("k{i:04}"), "value": value})
            )
        })
        .collect();
    let dataset = dir.path().join("small.jsonl");
    std::fs::write(&dataset, lines).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_strongbox-bench"))
        .args([
            "--dataset",
            dataset.to_str().unwrap(),
            "--duration",
            "0.2",
            "--concurrency",
            "4",
            "--scan-records",
            "700",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    for field in [
        "write_ops_per_s",
        "seed_write_ops_per_s",
        "read_cold_ops_per_s",
        "seed_read_ops_per_s",
        "read_hit_ops_per_s",
        "mixed_ops_per_s",
        "file_bytes",
        "seed_file_bytes",
        "raw_bytes",
        "write_p50_us",
        "write_p99_us",
        "read_hit_p99_us",
        "seed_read_hit_ops_per_s",
        "seed_read_hit_p99_us",
        "transfer_ops_per_s",
        "transfer_p50_us",
        "transfer_p99_us",
        "baseline_transfer_ops_per_s",
        "baseline_transfer_p99_us",
        "transfer_accounts",
        "scan_values_per_s",
        "scan_retrieve_values_per_s",
        "feed_write_off_ops_per_s",
        "feed_write_on_ops_per_s",
        "feed_write_on_p99_us",
        "feed_lag_ops_per_s",
        "feed_lag_polled_ops_per_s",
    ] {
        assert!(
            report[field].as_f64().is_some_and(|value| value > 0.0),
            "{field}: {}",
            report[field]
        );
    }
    assert_eq!(report["records"], 300);
    assert_eq!(report["scan_records"], 700);
    assert!(
        report["transfer_retry_rate"]
            .as_f64()
            .is_some_and(|rate| rate >= 0.0)
    );
    // A change may reach a subscriber before its writer hears of the commit: a lag of 0.
    for field in [
        "feed_lag_p50_us",
        "feed_lag_p99_us",
        "feed_lag_polled_p50_us",
        "feed_lag_polled_p99_us",
    ] {
        assert!(
            report[field].as_u64().is_some(),
            "{field}: {}",
            report[field]
        );
    }
    for ratio in [
        "read_hit",
        "read_cold",
        "write",
        "file_bytes",
        "transfer",
        "transfer_to_write",
        "scan",
        "feed_write",
    ] {
        assert!(report["ratios"][ratio].as_f64().is_some(), "{ratio}");
    }
}

fn bench(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_strongbox-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn without_a_dataset_it_benchmarks_the_same_generated_game_data_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let [first, second] = ["first.jsonl", "second.jsonl"].map(|name| dir.path().join(name));
    for file in [&first, &second] {
        bench(&[
            "--records",
            "500",
            "--write-dataset",
            file.to_str().unwrap(),
        ]);
    }
    let text = std::fs::read_to_string(&first).unwrap();
    assert_eq!(text, std::fs::read_to_string(&second).unwrap());
    assert_eq!(text.lines().count(), 500);
    let collections: BTreeSet<String> = text
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["collection"].as_str().unwrap().to_owned()
        })
        .collect();
    for expected in [
        "players",
        "game_sessions",
        "transactions",
        "chat",
        "leaderboards",
    ] {
        assert!(
            collections.contains(expected),
            "{expected}: {collections:?}"
        );
    }
    assert!(
        text.contains(r#""kind":"BetPlaced""#),
        "bets are in the data"
    );

    let output = bench(&[
        "--records",
        "300",
        "--duration",
        "0.1",
        "--concurrency",
        "2",
        "--scan-records",
        "300",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records"], 300);
    assert!(report["seed_read_hit_ops_per_s"].as_f64().unwrap() > 0.0);
    let conflicting = Command::new(env!("CARGO_BIN_EXE_strongbox-bench"))
        .args(["--dataset", "x.jsonl", "--records", "5"])
        .output()
        .unwrap();
    assert_eq!(conflicting.status.code(), Some(2));
}
