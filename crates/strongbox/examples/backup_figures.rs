//! Backup figures on a JSON Lines sample (`{"collection", "key", "value"}` per line): the full
//! backup's time and repository size against the database file, then the second backup's time
//! and added bytes after changing 1% of the keys, then verify and restore times.
//!
//! ```text
//! cargo run --release -p strongbox-store --example backup_figures -- /work/shared/data/bitcraps-sample.jsonl
//! ```

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use strongbox::backup::{BackupRef, Repository, RestoreOptions};
use strongbox::{Config, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sample = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/data/bitcraps-sample.jsonl".to_owned());
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sample.db");
    let store = Store::open(Config::new(&db)).await?;

    let mut keys = Vec::new();
    let started = Instant::now();
    let mut tx = store.transaction();
    for line in std::io::BufReader::new(std::fs::File::open(&sample)?).lines() {
        let line: serde_json::Value = serde_json::from_str(&line?)?;
        let (collection, key) = (
            line["collection"].as_str().unwrap_or_default().to_owned(),
            line["key"].as_str().unwrap_or_default().to_owned(),
        );
        tx.store(&collection, &key, &line["value"])?;
        keys.push((collection, key));
        if tx.len() == 500 {
            std::mem::replace(&mut tx, store.transaction())
                .commit()
                .await?;
        }
    }
    tx.commit().await?;
    // Checkpoint, so that the database is one file of its settled size.
    store.maintenance().await?;
    let db_bytes = bytes_under(dir.path(), "sample.db");
    println!(
        "loaded {} records in {:.2} s; database file {} (sample {})",
        keys.len(),
        started.elapsed().as_secs_f64(),
        mib(db_bytes),
        mib(std::fs::metadata(&sample)?.len()),
    );

    let repository = Repository::open_or_create(dir.path().join("repository")).await?;
    // When each stage started, from the progress callback.
    let stages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(&str, f64)>::new()));
    let backup_started = Instant::now();
    let seen = std::sync::Arc::clone(&stages);
    let first = repository
        .backup(&store, move |progress| {
            let mut seen = seen.lock().unwrap_or_else(|error| error.into_inner());
            if seen.last().map(|(stage, _)| *stage) != Some(progress.stage.name()) {
                seen.push((
                    progress.stage.name(),
                    backup_started.elapsed().as_secs_f64(),
                ));
            }
        })
        .await?;
    let repo_after_first = bytes_under(repository.dir(), "");
    let stages = stages
        .lock()
        .unwrap_or_else(|error| error.into_inner())
        .clone();
    println!(
        "full backup:   {:>7.3} s  {} records, {} blobs written, {} written ({} manifest); \
         repository {} = {:.0}% of the database file ({} on disk in 4 KiB blocks); stages \
         started at {stages:?}",
        first.elapsed_ms as f64 / 1000.0,
        first.records,
        first.blobs_written,
        mib(first.bytes_written),
        mib(first.manifest_bytes),
        mib(repo_after_first),
        100.0 * repo_after_first as f64 / db_bytes as f64,
        mib(disk_usage(repository.dir())),
    );

    // Change 1% of the keys, spread over the whole store.
    let changed: Vec<_> = keys.iter().step_by(100).collect();
    for (n, (collection, key)) in changed.iter().enumerate() {
        let mut value: serde_json::Value =
            store.retrieve(collection, key).await?.unwrap_or_default();
        value["backup_figures_touch"] = serde_json::json!(n);
        store.store(collection, key, &value).await?;
    }
    let second = repository.backup(&store, |_| {}).await?;
    let repo_after_second = bytes_under(repository.dir(), "");
    println!(
        "second backup: {:>7.3} s  {} keys changed, {} blobs written, {} written ({} blobs + {} \
         manifest) = {:.1}% of the first; repository grew {}",
        second.elapsed_ms as f64 / 1000.0,
        changed.len(),
        second.blobs_written,
        mib(second.bytes_written),
        mib(second.bytes_written - second.manifest_bytes),
        mib(second.manifest_bytes),
        100.0 * second.bytes_written as f64 / first.bytes_written as f64,
        mib(repo_after_second - repo_after_first),
    );

    let started = Instant::now();
    let report = repository.verify(None, |_| {}).await?;
    println!(
        "verify:        {:>7.3} s  {} backups, {} blobs, {} read, clean: {}",
        started.elapsed().as_secs_f64(),
        report.backups_checked,
        report.blobs_checked,
        mib(report.bytes_checked),
        report.is_clean(),
    );
    let restored = dir.path().join("restored.db");
    let summary = repository
        .restore(
            &BackupRef::Latest,
            &Config::new(&restored),
            &RestoreOptions::all(),
            |_| {},
        )
        .await?;
    println!(
        "restore:       {:>7.3} s  {} records into a new file of {} (verified)",
        summary.elapsed_ms as f64 / 1000.0,
        summary.records,
        mib(bytes_under(dir.path(), "restored.db")),
    );
    store.close().await?;
    Ok(())
}

/// Bytes of the files under `dir` whose names start with `prefix` (all of them for "").
fn bytes_under(dir: &Path, prefix: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                bytes_under(&path, "")
            } else {
                entry.metadata().map_or(0, |meta| meta.len())
            }
        })
        .sum()
}

/// Bytes of disk the files under `dir` occupy (whole blocks).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let own = entry.metadata().map_or(0, |meta| meta.blocks() * 512);
            own + if entry.path().is_dir() {
                disk_usage(&entry.path())
            } else {
                0
            }
        })
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}
