//! Offsite figures on a JSON Lines sample (`{"collection", "key", "value"}` per line), against
//! an S3-compatible server (the `AWS_*` variables, and `STRONGBOX_TEST_S3_BUCKET`): a backup
//! into a local directory, then the same backup through an `s3://` session (mirror, upload)
//! and `backup copy` of the local repository to another prefix, side by side; a second
//! backup after changing 1% of the keys, local and offsite; a follow step; and reading the
//! repository back from an empty mirror (download) and a warm one, then a restore.
//!
//! ```text
//! cargo run --release -p strongbox-store --features s3 --example offsite_figures -- /work/shared/data/bitcraps-sample.jsonl
//! ```

use std::io::BufRead;
use std::time::Instant;

use strongbox::backup::{Access, BackupRef, Offsite, Repository, RestoreOptions, copy};
use strongbox::{Config, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sample = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/data/bitcraps-sample.jsonl".to_owned());
    let bucket = std::env::var("STRONGBOX_TEST_S3_BUCKET")?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let (url, copied) = (
        format!("s3://{bucket}/figures-{nanos}"),
        format!("s3://{bucket}/figures-copy-{nanos}"),
    );
    let dir = tempfile::tempdir()?;
    let store = Store::open(Config::new(dir.path().join("sample.db"))).await?;
    let keys = load(&store, &sample).await?;
    println!("records: {}", keys.len());

    let local = Repository::open_or_create(dir.path().join("local")).await?;
    let offsite = Offsite::new(&url, dir.path().join("cache"))?;
    for round in ["first", "after 1% changed"] {
        if round != "first" {
            for (collection, key) in keys.iter().step_by(100) {
                store
                    .store(collection, key, &serde_json::json!({ "changed": key }))
                    .await?;
            }
        }
        let started = Instant::now();
        let summary = local.backup(&store, |_| {}).await?;
        let local_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let session = offsite.open(Access::Write, |_| {}).await?;
        let opened_ms = started.elapsed().as_millis();
        let mirror = Repository::open_or_create(session.dir()).await?;
        mirror.backup(&store, |_| {}).await?;
        let published = session.publish(|_| {}).await?;
        session.close().await?;
        let offsite_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let copy_report = copy(&local.dir().display().to_string(), &copied, |_| {}).await?;
        let copy_ms = started.elapsed().as_millis();
        println!(
            "{round} backup: local {local_ms} ms ({} bytes written); offsite session {offsite_ms} \
             ms (opening {opened_ms} ms; {} objects, {} bytes uploaded); local backup + copy \
             {} ms ({} bytes copied)",
            summary.bytes_written,
            published.uploaded.objects_copied,
            published.uploaded.bytes_copied,
            local_ms + copy_ms,
            copy_report.bytes_copied
        );
    }

    store
        .store("players", "figures", &serde_json::json!(1))
        .await?;
    let started = Instant::now();
    let session = offsite.open(Access::Write, |_| {}).await?;
    let mirror = Repository::open(session.dir()).await?;
    let step = mirror.follower(&store).step().await?;
    let published = session.publish(|_| {}).await?;
    session.close().await?;
    println!(
        "follow step of {} change(s) through a session: {} ms ({} bytes uploaded)",
        step.changes,
        started.elapsed().as_millis(),
        published.uploaded.bytes_copied
    );

    for mirror in ["empty", "warm"] {
        let cache = match mirror {
            "empty" => dir.path().join("elsewhere"),
            _ => dir.path().join("cache"),
        };
        let started = Instant::now();
        let session = Offsite::new(&url, cache)?
            .open(Access::Read, |_| {})
            .await?;
        let opened_ms = started.elapsed().as_millis();
        let repository = Repository::open(session.dir()).await?;
        let target = dir.path().join(format!("restored-{mirror}.db"));
        let started = Instant::now();
        repository
            .restore(
                &BackupRef::Latest,
                &Config::new(&target),
                &RestoreOptions::all(),
                |_| {},
            )
            .await?;
        session.close().await?;
        println!(
            "read session on a {mirror} mirror: opened in {opened_ms} ms, restore {} ms",
            started.elapsed().as_millis()
        );
    }
    store.close().await?;
    Ok(())
}

/// Loads the sample in transactions of 500 records; returns its keys.
async fn load(
    store: &Store,
    sample: &str,
) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let mut keys = Vec::new();
    let mut tx = store.transaction();
    for line in std::io::BufReader::new(std::fs::File::open(sample)?).lines() {
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
    Ok(keys)
}
