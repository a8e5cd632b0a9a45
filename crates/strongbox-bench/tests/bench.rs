//! End-to-end test of the `strongbox-bench` binary on a small generated dataset.

use std::process::Command;

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
    ] {
        assert!(
            report[field].as_f64().is_some_and(|value| value > 0.0),
            "{field}: {}",
            report[field]
        );
    }
    assert_eq!(report["records"], 300);
}
