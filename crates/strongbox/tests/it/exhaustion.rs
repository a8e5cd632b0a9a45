//! Exhaustion: a full disk and a flood of tasks give typed errors, lose nothing acknowledged,
//! and leave a database that opens.

use std::process::Command;

use strongbox::codec::Algorithm;
use strongbox::{Config, Error, ListOptions, Store};
use tokio::task::JoinSet;

use crate::common::Harness;

const FILL_DB: &str = "STRONGBOX_TEST_FILL_DB";

/// An incompressible 8 KiB value, different for each `n`.
fn noise(n: u64) -> String {
    crate::common::noise(n, 8192)
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a 3 MiB tmpfs (needs root, as CI has); `None` where mounting is not allowed.
    fn mount(dir: &std::path::Path) -> Option<Self> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallDisk(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The child of `a_full_disk_is_a_typed_error_and_loses_nothing` (the same test, re-run by
/// it with `STRONGBOX_TEST_FILL_DB` set): writes to the database at `path` until the disk is
/// full, acknowledging each commit on stdout.
async fn fill_the_disk(path: String) {
    let mut config = Config::new(path);
    config.compression.algorithm = Algorithm::None;
    let store = Store::open(config).await.unwrap();
    for batch in 0u64.. {
        let mut tx = store.transaction();
        for i in 0..10 {
            let n = batch * 10 + i;
            tx.store("fill", &format!("{n:08}"), &noise(n)).unwrap();
        }
        match tx.commit().await {
            Ok(_) => println!("ack {batch}"),
            Err(error) => {
                println!("error {} {error:#}", error.kind());
                // The store stays usable for reads after the failure.
                assert!(store.retrieve::<String>("fill", "00000000").await.is_ok());
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_typed_error_and_loses_nothing() {
    if let Ok(path) = std::env::var(FILL_DB) {
        return fill_the_disk(path).await;
    }
    let dir = tempfile::tempdir().unwrap();
    // A real full disk needs a small file system: mounting one needs root, as CI has. Without
    // it the test is skipped, unless STRONGBOX_REQUIRE_TMPFS (set by .ci/run) asks for it.
    let Some(disk) = SmallDisk::mount(dir.path()) else {
        assert!(
            std::env::var_os("STRONGBOX_REQUIRE_TMPFS").is_none(),
            "cannot mount a tmpfs, and STRONGBOX_REQUIRE_TMPFS is set"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: cannot mount a small tmpfs for the full-disk test (needs root)\n",
        );
        return;
    };
    let db = dir.path().join("full.db");
    // Another file on the same disk, removed afterwards to free space.
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 << 10]).unwrap();
    // The child writes until the file system is full (ENOSPC).
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "exhaustion::a_full_disk_is_a_typed_error_and_loses_nothing",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(FILL_DB, &db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acknowledged = stdout
        .lines()
        .filter(|line| line.starts_with("ack "))
        .count() as u64;
    let Some(error) = stdout.lines().find(|line| line.starts_with("error ")) else {
        panic!("the child never hit the limit: {stdout}")
    };
    assert!(
        error.starts_with("error storage_full storage is full"),
        "{error}"
    );
    assert!(acknowledged > 10, "{stdout}");

    let store = Store::open(Config::new(&db)).await.unwrap();
    let keys = store.list("fill", ListOptions::all()).await.unwrap();
    assert!(
        keys.len() as u64 >= acknowledged * 10,
        "{} keys for {acknowledged} acknowledged batches",
        keys.len()
    );
    for n in 0..acknowledged * 10 {
        assert_eq!(
            store
                .retrieve::<String>("fill", &format!("{n:08}"))
                .await
                .unwrap(),
            Some(noise(n))
        );
    }
    assert!(store.verify().await.unwrap().is_clean());
    // Maintenance and a backup on the full disk fail step by step with typed errors, never a
    // panic, and leave the store and the repository usable.
    let report = store.maintenance().await.unwrap();
    assert!(
        report
            .steps
            .iter()
            .any(|step| step.name == "integrity_check" && step.is_ok),
        "{report:?}"
    );
    let repository_dir = dir.path().join("backups");
    let backup = match strongbox::backup::Repository::open_or_create(&repository_dir).await {
        Ok(repository) => repository.backup(&store, |_| {}).await.map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = &backup {
        assert!(
            matches!(error, Error::Io { .. } | Error::StorageFull { .. }),
            "{error}"
        );
    }
    assert_eq!(
        store.retrieve::<String>("fill", "00000001").await.unwrap(),
        Some(noise(1))
    );

    // Freeing space makes the store writable again.
    std::fs::remove_file(&ballast).unwrap();
    if let Ok(repository) = strongbox::backup::Repository::open(&repository_dir).await {
        assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    }
    store.store("fill", "after", &"space again").await.unwrap();
    assert!(store.delete("fill", "00000000").await.unwrap());
    store.close().await.unwrap();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_writers_and_readers_finish_or_fail_typed() {
    let harness = Harness::sqlite_with(|config| {
        config.read_connections = 2;
        config.busy_timeout_ms = 2_000;
        config.max_batch_requests = 64;
    })
    .await;
    let mut tasks = JoinSet::new();
    for task in 0..1000u32 {
        let store = harness.store.clone();
        tasks.spawn(async move {
            let key = format!("k{}", task / 2 % 100);
            if task % 2 == 0 {
                store.store("flood", &key, &task).await.map(|_| ())
            } else {
                store.retrieve::<u32>("flood", &key).await.map(|_| ())
            }
        });
    }
    let mut busy = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => {}
            Err(Error::Busy { .. }) => busy += 1,
            Err(error) => panic!("{error}"),
        }
    }
    assert!(busy < 1000);
    assert_eq!(harness.store.count("flood").await.unwrap(), 100);
    harness.finish().await;
}
