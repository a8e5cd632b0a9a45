//! Upkeep beside a working store: a full vacuum waits for a run without writes, and the WAL
//! shrinks back once a reader that held it open is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strongbox::Store;

use crate::common::{Harness, noise};

/// The outcome of the run's vacuum step.
fn vacuum_outcome(report: &strongbox::MaintenanceReport) -> String {
    report
        .steps
        .iter()
        .find(|step| step.name == "vacuum")
        .map(|step| step.outcome.clone())
        .unwrap_or_default()
}

/// A store whose file is a third slack (half of its values deleted), with a full vacuum due
/// past 10% of slack.
async fn half_empty_store() -> Harness {
    let harness = Harness::sqlite_with(|config| {
        // The feed keeps one change, so that the deleted values are not kept for their puts.
        config.changes_retention_count = 1;
        config.vacuum_slack_percent = 10;
    })
    .await;
    let store = &harness.store;
    for batch in 0..20u64 {
        let mut tx = store.transaction();
        for i in 0..100 {
            let n = batch * 100 + i;
            tx.store("bulk", &format!("{n:05}"), &noise(n, 2048))
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    for n in (0..2000).step_by(2) {
        store.delete("bulk", &format!("{n:05}")).await.unwrap();
    }
    harness
}

/// Runs maintenance on `store` while `writer` writes; the number of writes made beside it.
async fn maintenance_beside(store: &Store, writer: &Store) -> (strongbox::MaintenanceReport, u64) {
    let writing = Arc::new(AtomicBool::new(true));
    let task = tokio::spawn({
        let (writer, writing) = (writer.clone(), Arc::clone(&writing));
        async move {
            let mut n = 0u64;
            while writing.load(Ordering::Relaxed) {
                writer
                    .store("scores", &format!("{}", n % 50), &n)
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }
    });
    let report = store.maintenance().await.unwrap();
    writing.store(false, Ordering::Relaxed);
    (report, task.await.unwrap())
}

/// Then a run without writes rebuilds the file.
async fn a_quiet_run_vacuums_in_full(store: &Store, busy: &strongbox::MaintenanceReport) {
    let quiet = store.maintenance().await.unwrap();
    let outcome = vacuum_outcome(&quiet);
    assert!(outcome.contains("then full"), "{outcome}");
    assert!(
        quiet.file_bytes_after < busy.file_bytes_after * 3 / 4,
        "{} -> {}",
        busy.file_bytes_after,
        quiet.file_bytes_after
    );
    assert_eq!(
        store.retrieve::<String>("bulk", "00001").await.unwrap(),
        Some(noise(1, 2048))
    );
}

/// Half-empty pages call for a full vacuum, which holds every writer back for its whole
/// length: while this process writes, maintenance leaves it for a run without writes (and says
/// so); the next quiet run rebuilds the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_vacuum_waits_for_a_run_without_writes() {
    let harness = half_empty_store().await;
    let store = &harness.store;
    let (busy, writes) = maintenance_beside(store, store).await;
    assert!(busy.errors.is_empty(), "{:?}", busy.errors);
    let outcome = vacuum_outcome(&busy);
    assert!(
        outcome.contains("left to a run without writes"),
        "{outcome} ({writes} writes beside it)"
    );
    a_quiet_run_vacuums_in_full(store, &busy).await;
    harness.finish().await;
}

/// The same when the writes come from another connection to the file (another process, or as
/// here another `Store` on the same path): they would wait for a full vacuum just as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_vacuum_waits_for_another_processes_writes_too() {
    let harness = half_empty_store().await;
    let store = &harness.store;
    let other = Store::open(harness.store.config().clone()).await.unwrap();
    let (busy, writes) = maintenance_beside(store, &other).await;
    other.close().await.unwrap();
    assert!(busy.errors.is_empty(), "{:?}", busy.errors);
    let outcome = vacuum_outcome(&busy);
    assert!(
        outcome.contains("another connection's writes")
            && outcome.contains("left to a run without writes"),
        "{outcome} ({writes} writes beside it)"
    );
    a_quiet_run_vacuums_in_full(store, &busy).await;
    harness.finish().await;
}

/// A reader holding an old snapshot keeps checkpoints from passing it, so the WAL grows by
/// everything written meanwhile; once the reader is gone, the next checkpoint copies it back
/// and the writer starts the WAL over, cutting the file back to 64 MiB without waiting for
/// maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_shrinks_back_after_a_long_reader() {
    const LIMIT: u64 = 64 << 20;
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    store.store("big", "first", &1).await.unwrap();
    let wal = {
        let mut name = harness.path().into_os_string();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    let reader = rusqlite::Connection::open(harness.path()).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
        .unwrap();
    for i in 0..100u64 {
        store
            .store("big", &format!("{i:03}"), &noise(i, 1 << 20))
            .await
            .unwrap();
    }
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(grown > LIMIT, "the WAL grew to {grown} bytes only");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // The first write checkpoints (the WAL is past the checkpoint size), the next starts it over.
    for n in 0..3 {
        store.store("small", "n", &n).await.unwrap();
    }
    let after = std::fs::metadata(&wal).unwrap().len();
    assert!(
        after <= LIMIT,
        "the WAL stayed at {after} bytes (it grew to {grown})"
    );
    assert_eq!(
        store.retrieve::<String>("big", "042").await.unwrap(),
        Some(noise(42, 1 << 20))
    );
    harness.finish().await;
}
