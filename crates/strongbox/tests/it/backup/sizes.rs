//! What backups cost: an incremental backup after changing 1% of the records writes a small
//! part of the first backup's bytes, and the repository takes little more than its data on
//! disk (see the bounds below, and docs/benchmarks.md for the figures). With `STRONGBOX_BACKUP_SAMPLE=<jsonl>` it also measures that file (`--nocapture`
//! prints the figures).

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use serde_json::Value;
use strongbox::Store;
use strongbox::backup::{BackupRef, Repository, RestoreOptions};

use super::{files_under, indexes, new_repository, restore, value};
use crate::common::Harness;

/// Bytes the repository's files take on disk (allocated blocks).
fn disk_bytes(repository: &Repository) -> u64 {
    files_under(repository.dir())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().blocks() * 512)
        .sum()
}

/// Bytes of the repository's files (their lengths): what it holds.
fn file_bytes(repository: &Repository) -> u64 {
    files_under(repository.dir())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

/// Stored bytes of the values the repository holds (its data).
fn data_bytes(repository: &Repository) -> u64 {
    indexes(repository)
        .iter()
        .flat_map(|index| index["packs"].as_array().unwrap().clone())
        .flat_map(|pack| pack["blobs"].as_array().unwrap().clone())
        .map(|blob| blob[2].as_u64().unwrap())
        .sum()
}

/// Where the repository's bytes go: values, manifest chunks, index files, manifest files
/// (sizes of the files or entries, not blocks).
fn breakdown(repository: &Repository) -> String {
    let chunks: u64 = indexes(repository)
        .iter()
        .flat_map(|index| index["packs"].as_array().unwrap().clone())
        .flat_map(|pack| pack["chunks"].as_array().unwrap().clone())
        .map(|chunk| chunk[2].as_u64().unwrap())
        .sum();
    let size_of = |dir: &str| -> u64 {
        files_under(&repository.dir().join(dir))
            .iter()
            .map(|path| std::fs::metadata(path).unwrap().len())
            .sum()
    };
    format!(
        "values {}, manifest chunks {chunks}, index files {}, manifest files {}",
        data_bytes(repository),
        size_of("index"),
        size_of("manifests")
    )
}

/// Backs up, changes `percent` of the keys (spread evenly), backs up again; returns the
/// second backup's bytes over the first's.
async fn incremental(store: &Store, repository: &Repository, keys: &[(String, String)]) -> String {
    let started = Instant::now();
    let first = repository.backup(store, |_| {}).await.unwrap();
    let first_ms = started.elapsed().as_millis();
    let mut lines = vec![format!(
        "first backup: {} records, {} bytes written ({} of manifest) in {first_ms} ms",
        first.records, first.bytes_written, first.manifest_bytes
    )];
    for (round, percent) in [1usize, 10].into_iter().enumerate() {
        for (n, (collection, key)) in keys.iter().enumerate() {
            if (n * 7919 + round) % 100 < percent {
                let seed = 1_000_000 * (round as u64 + 1) + n as u64;
                store.store(collection, key, &value(seed)).await.unwrap();
            }
        }
        let next = repository.backup(store, |_| {}).await.unwrap();
        let ratio = next.bytes_written as f64 / first.bytes_written as f64;
        lines.push(format!(
            "after changing {percent}%: {} bytes written ({} of manifest), {:.2}% of the first",
            next.bytes_written,
            next.manifest_bytes,
            ratio * 100.0
        ));
        // The target: a backup after a 1% change writes at most 2% of the first. It is
        // differential (only the changed records' lines), so it costs the new values and a
        // few bytes a record, wherever the changes fall.
        if percent == 1 {
            assert!(ratio <= 0.02, "{}", lines.join("\n"));
        }
    }
    let (disk, files, data) = (
        disk_bytes(repository),
        file_bytes(repository),
        data_bytes(repository),
    );
    lines.push(format!(
        "repository: {disk} bytes on disk for {files} bytes of files ({:.3}x) and {data} bytes \
         of values ({:.3}x): {}",
        disk as f64 / files as f64,
        disk as f64 / data as f64,
        breakdown(repository)
    ));
    // The measure (67.7 MiB on disk for 15.5 MiB of files with one file per value):
    // packs of a few MiB waste almost no block.
    assert!(disk as f64 <= 1.1 * files as f64, "{}", lines.join("\n"));
    // Against the values alone (a stricter reading of the 1.1): what is above them is
    // metadata, every record's line in the whole backup's chunks (its key, times and 32-byte
    // blob id) and every blob's entry in the index (its 32-byte id again), about 80 bytes a
    // record, which values of 400 to 500 stored bytes make about 1.25-1.35.
    assert!(disk as f64 <= 1.5 * data as f64, "{}", lines.join("\n"));
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_backup_costs_its_changes_and_the_repository_its_data() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let keys: Vec<(String, String)> = (0..5000u64)
        .map(|i| ("players".to_owned(), format!("p{i:05}")))
        .collect();
    for (n, (collection, key)) in keys.iter().enumerate() {
        store
            .store(collection, key, &value(n as u64))
            .await
            .unwrap();
    }
    println!(
        "generated store:\n{}",
        incremental(store, &repository, &keys).await
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_store_backs_up_within_its_targets() {
    let Ok(sample) = std::env::var("STRONGBOX_BACKUP_SAMPLE") else {
        eprintln!("skipped: set STRONGBOX_BACKUP_SAMPLE to a JSON Lines sample to measure it");
        return;
    };
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let mut keys = Vec::new();
    for line in std::fs::read_to_string(sample).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let (collection, key) = (
            record["collection"].as_str().unwrap(),
            record["key"].as_str().unwrap(),
        );
        store
            .store(collection, key, &record["value"])
            .await
            .unwrap();
        keys.push((collection.to_owned(), key.to_owned()));
    }
    // The anchor: SQLite's own copy of the same store, `VACUUM INTO` a new file.
    let anchor = harness.dir.path().join("vacuum-into.db");
    let started = Instant::now();
    rusqlite::Connection::open(harness.path())
        .unwrap()
        .execute("VACUUM INTO ?1", [anchor.to_str().unwrap()])
        .unwrap();
    println!(
        "anchor: VACUUM INTO of the same store: {} bytes in {} ms",
        std::fs::metadata(&anchor).unwrap().len(),
        started.elapsed().as_millis()
    );
    println!(
        "sample store:\n{}",
        incremental(store, &repository, &keys).await
    );
    let target = harness.dir.path().join("restored.db");
    let started = Instant::now();
    let restored = restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    println!(
        "restore: {} records in {} ms",
        restored.records,
        started.elapsed().as_millis()
    );
    harness.finish().await;
}
