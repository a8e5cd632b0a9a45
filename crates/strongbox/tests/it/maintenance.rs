//! Maintenance, statistics and background tasks.

use std::time::Duration;

use strongbox::{Error, Expect, MaintenanceOptions};

use crate::common::Harness;

/// A value of about 2 KiB that compresses poorly, different for each `i`.
fn bulky(i: u64) -> String {
    crate::common::noise(i, 2048)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_after_deleting_half_the_data_shrinks_the_file() {
    // The feed keeps one change, so that the deleted values are not kept for their puts.
    let harness = Harness::sqlite_with(|config| config.changes_retention_count = 1).await;
    let store = &harness.store;
    for batch in 0..20 {
        let mut tx = store.transaction();
        for i in 0..100 {
            let n = batch * 100 + i;
            tx.store("bulk", &format!("{n:05}"), &bulky(n)).unwrap();
        }
        tx.commit().await.unwrap();
    }
    store.maintenance().await.unwrap();
    let full_size = store.storage_stats().await.unwrap().file_bytes;
    for n in (0..2000).step_by(2) {
        store.delete("bulk", &format!("{n:05}")).await.unwrap();
    }
    let report = store.maintenance().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report.steps.iter().all(|step| step.is_ok),
        "{:?}",
        report.steps
    );
    let names: Vec<_> = report.steps.iter().map(|step| step.name).collect();
    assert_eq!(
        names,
        [
            "flush_read_counts",
            "sweep_expired",
            "trim_changes",
            "collect_orphans",
            "compress",
            "optimize",
            "vacuum",
            "checkpoint",
            "integrity_check",
            "cache_cleanup"
        ]
    );
    assert!(report.pages_vacuumed > 0, "{report:?}");
    assert!(
        report.file_bytes_after < full_size * 3 / 4,
        "{full_size} -> {report:?}"
    );
    assert_eq!(store.count("bulk").await.unwrap(), 1000);
    assert_eq!(
        store.retrieve::<String>("bulk", "00001").await.unwrap(),
        Some(bulky(1))
    );

    let full = store
        .maintenance_with(MaintenanceOptions {
            is_full: true,
            reindex: true,
        })
        .await
        .unwrap();
    assert!(full.errors.is_empty(), "{:?}", full.errors);
    assert!(
        full.steps
            .iter()
            .any(|step| step.name == "reindex" && step.is_ok)
    );
    harness.finish().await;
}

/// A released blob waits for the sweep; a write of the same value before it takes the blob
/// back, and the sweep then leaves it alone. (The feed keeps one change, so that no change of
/// a put holds the released values.)
#[tokio::test]
async fn a_released_value_written_again_survives_the_sweep() {
    let harness = Harness::sqlite_with(|config| config.changes_retention_count = 1).await;
    let store = &harness.store;
    store.store("players", "alice", &bulky(1)).await.unwrap();
    store.delete("players", "alice").await.unwrap();
    assert_eq!(store.storage_stats().await.unwrap().blobs, 0);
    store.store("players", "bob", &bulky(1)).await.unwrap();
    assert_eq!(store.storage_stats().await.unwrap().blobs, 1);
    let report = store.maintenance().await.unwrap();
    assert_eq!(
        (report.released_blobs_removed, report.orphan_blobs_removed),
        (0, 0),
        "{report:?}"
    );
    store.store("players", "carol", &bulky(2)).await.unwrap();
    store.delete("players", "carol").await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert!(stats.released_bytes > 1000, "{stats:?}");
    let report = store.maintenance().await.unwrap();
    assert_eq!(report.released_blobs_removed, 1, "{report:?}");
    assert_eq!(store.storage_stats().await.unwrap().released_bytes, 0);
    assert_eq!(
        store.retrieve::<String>("players", "bob").await.unwrap(),
        Some(bulky(1))
    );
    assert!(store.verify().await.unwrap().is_clean());
    harness.finish().await;
}

#[tokio::test]
async fn orphan_collection_removes_released_blobs_and_never_a_possibly_needed_orphan() {
    // The feed keeps one change (the last delete), so that no put's change holds a value.
    let mut harness = Harness::sqlite_with(|config| config.changes_retention_count = 1).await;
    harness
        .store
        .store("players", "alice", &"alice")
        .await
        .unwrap();
    harness
        .store
        .store("players", "bob", &"shared")
        .await
        .unwrap();
    harness
        .store
        .store("players", "carol", &"shared")
        .await
        .unwrap();
    // Released: its last reference is gone, the blob waits for the sweep.
    harness
        .store
        .store("players", "dave", &"gone")
        .await
        .unwrap();
    harness.store.delete("players", "dave").await.unwrap();
    assert!(harness.store.verify().await.unwrap().is_clean());
    harness.store.close().await.unwrap();
    // An orphan: a blob whose count says it is referenced, with no record. That is what a
    // damaged record reference looks like, so the sweep deletes nothing until it is resolved.
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    conn.execute(
        "INSERT INTO blobs (id, data, raw_size) VALUES (?1, ?2, 3)",
        (vec![7u8; 32], vec![0u8, b'x', b'y', b'z']),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO blob_refs (ref, refcount) VALUES (last_insert_rowid(), 1)",
        [],
    )
    .unwrap();
    drop(conn);
    harness.reopen().await;
    assert!(!harness.store.verify().await.unwrap().is_clean());
    let report = harness.store.maintenance().await.unwrap();
    assert_eq!(report.orphan_blobs_removed, 0, "{report:?}");
    assert_eq!(report.released_blobs_removed, 0, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|error| error.contains("nothing was deleted")),
        "{report:?}"
    );
    assert_eq!(harness.store.storage_stats().await.unwrap().blobs, 3);
    // Once the count is put right (here by hand), the sweep removes both.
    harness.store.close().await.unwrap();
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    conn.execute("UPDATE blob_refs SET refcount = 0 WHERE refcount = 1 AND ref = (SELECT ref FROM blobs WHERE id = ?1)", [vec![7u8; 32]])
        .unwrap();
    drop(conn);
    harness.reopen().await;
    let report = harness.store.maintenance().await.unwrap();
    assert_eq!(report.released_blobs_removed, 2, "{report:?}");
    assert!(harness.store.verify().await.unwrap().is_clean());
    for (key, value) in [("alice", "alice"), ("bob", "shared"), ("carol", "shared")] {
        assert_eq!(
            harness
                .store
                .retrieve::<String>("players", key)
                .await
                .unwrap()
                .as_deref(),
            Some(value)
        );
    }
    assert_eq!(harness.store.storage_stats().await.unwrap().blobs, 2);
    harness.finish().await;
}

#[tokio::test]
async fn stats_count_operations_dedup_and_errors() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    for i in 0..10 {
        store
            .store("players", &format!("p{i}"), &"default profile")
            .await
            .unwrap();
        store
            .retrieve::<String>("players", &format!("p{i}"))
            .await
            .unwrap();
    }
    let conflict = store
        .store_if("players", "p0", &"x", Expect::Absent)
        .await
        .unwrap_err();
    assert!(matches!(conflict, Error::Conflict { .. }));
    store.delete("players", "p9").await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.store.count, 11);
    assert_eq!(stats.retrieve.count, 10);
    assert_eq!(stats.delete.count, 1);
    assert!(stats.store.p99_us >= stats.store.p50_us);
    assert!(stats.store.p50_us > 0);
    assert_eq!(stats.writes.dedup_writes, 9);
    assert_eq!(
        stats.writes.dedup_saved_bytes,
        9 * "\"default profile\"".len() as u64
    );
    assert_eq!(stats.errors.get("conflict"), Some(&1));
    assert_eq!(stats.errors.len(), 1);
    assert_eq!(stats.cache.hit_ratio, 1.0);
    assert_eq!(stats.storage.records, 9);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_tasks_run_and_stop_with_the_store() {
    let mut harness = Harness::sqlite_with(|config| {
        config.stats_interval_secs = 1;
        config.maintenance_interval_secs = 1;
        config.cache_eviction_interval_secs = 1;
        config.expiry_sweep_interval_secs = 1;
    })
    .await;
    harness.store.store("players", "alice", &1).await.unwrap();
    harness.store.close().await.unwrap();
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    conn.execute(
        "INSERT INTO blobs (id, data, raw_size) VALUES (?1, ?2, 1)",
        (vec![9u8; 32], vec![0u8, b'1']),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO blob_refs (ref, refcount) VALUES (last_insert_rowid(), 0)",
        [],
    )
    .unwrap();
    drop(conn);
    harness.reopen().await;
    assert_eq!(harness.store.running_tasks(), 4);
    harness
        .store
        .retrieve::<i32>("players", "alice")
        .await
        .unwrap();
    // The maintenance task removes the released blob within a few of its one-second periods.
    let mut blobs = 2;
    for _ in 0..100 {
        blobs = harness.store.storage_stats().await.unwrap().blobs;
        if blobs == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(blobs, 1);
    // The expiry task deletes an expired record within a few of its one-second periods.
    let ttl = strongbox::PutOptions::new().ttl(Duration::from_millis(50));
    harness
        .store
        .store_with("sessions", "s1", &1, ttl)
        .await
        .unwrap();
    let mut records = 2;
    for _ in 0..100 {
        records = harness.store.storage_stats().await.unwrap().records;
        if records == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records, 1, "the expired record was swept");
    // The statistics task saved the read count while the store is still open.
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    let mut reads = 0i64;
    for _ in 0..30 {
        reads = conn
            .query_row(
                "SELECT access_count FROM records WHERE key = 'alice'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        if reads == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reads, 1);
    drop(conn);
    let store = harness.store.clone();
    store.close().await.unwrap();
    assert_eq!(store.running_tasks(), 0);
}

#[tokio::test]
async fn maintenance_takes_a_backup_when_one_is_due() {
    let backups = tempfile::tempdir().unwrap();
    let repository = backups.path().join("repo");
    let harness =
        Harness::sqlite_with(|config| config.backup_repository = Some(repository.clone())).await;
    harness.store.store("players", "alice", &1).await.unwrap();
    let first = harness.store.maintenance().await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let backup = first.backup.expect("the first maintenance backs up");
    assert_eq!(backup.backup.records, 1);
    let second = harness.store.maintenance().await.unwrap();
    assert!(second.backup.is_none(), "a day has not passed");
    assert!(
        second
            .steps
            .iter()
            .any(|step| step.name == "backup" && step.outcome == "not due yet")
    );
    let listed = strongbox::backup::Repository::open(&repository)
        .await
        .unwrap()
        .list()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    harness.finish().await;
}

#[cfg(feature = "postgres")]
mod on_postgres {
    use strongbox::{Config, MaintenanceReport, Store};

    use super::bulky;
    use crate::common::ScratchDatabase;

    /// The outcome of a maintenance step.
    fn outcome<'a>(report: &'a MaintenanceReport, name: &str) -> &'a str {
        let step = report.steps.iter().find(|step| step.name == name);
        let step = step.unwrap_or_else(|| panic!("no {name} step: {report:?}"));
        assert!(step.is_ok, "{report:?}");
        &step.outcome
    }

    /// On PostgreSQL, maintenance states no figure it did not measure: the server checkpoints its
    /// own log, free space inside pages is not measured, the integrity check runs only with
    /// amcheck, and the vacuum's pages and `file_bytes` are measured over every Strongbox table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn maintenance_on_postgres_reports_only_what_it_measured() {
        let Some(scratch) = ScratchDatabase::create().await else {
            return;
        };
        // The feed keeps one change, so that the deleted values are not kept for their puts.
        let config = Config::postgres(scratch.url()).with_changes_retention_count(1);
        let store = Store::open(config).await.unwrap();
        let admin = scratch.connect().await;
        for n in 0..300 {
            store
                .store("bulk", &format!("{n:05}"), &bulky(n))
                .await
                .unwrap();
        }
        for n in 0..300 {
            store.delete("bulk", &format!("{n:05}")).await.unwrap();
        }

        let report = store.maintenance().await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            outcome(&report, "checkpoint"),
            "not applicable: the PostgreSQL server checkpoints its own write-ahead log"
        );
        assert!(
            outcome(&report, "integrity_check").starts_with("not applicable: ")
                && outcome(&report, "integrity_check").contains("amcheck"),
            "{report:?}"
        );
        assert!(report.integrity_problems.is_empty());
        // Every value was deleted: the vacuum returns the tables' emptied pages, and says so.
        assert!(report.pages_vacuumed > 0, "{report:?}");
        let vacuum = outcome(&report, "vacuum");
        assert!(
            vacuum.starts_with(&format!("released {} pages; ", report.pages_vacuumed))
                && vacuum.contains("slack not measured: "),
            "{vacuum}"
        );
        assert!(
            report.file_bytes_after < report.file_bytes_before,
            "{report:?}"
        );

        // `file_bytes` is every Strongbox table with its indexes and TOAST data, dictionaries
        // and schema included (measured until no autovacuum changed a size in between).
        const TABLE_BYTES: &str = "
            SELECT sum(pg_total_relation_size(name::regclass))::BIGINT,
                   (pg_total_relation_size('strongbox_records')
                    + pg_total_relation_size('strongbox_blobs'))::BIGINT
            FROM unnest(ARRAY['strongbox_records', 'strongbox_changes', 'strongbox_blobs',
                              'strongbox_dictionaries', 'strongbox_meta']) AS name";
        let mut measured = None;
        for _ in 0..10 {
            let before = admin.query_one(TABLE_BYTES, &[]).await.unwrap();
            let file_bytes = store.storage_stats().await.unwrap().file_bytes;
            let after = admin.query_one(TABLE_BYTES, &[]).await.unwrap();
            let (all, records_and_blobs): (i64, i64) = (before.get(0), before.get(1));
            if all == after.get::<_, i64>(0) {
                measured = Some((file_bytes, all as u64, records_and_blobs as u64));
                break;
            }
        }
        let (file_bytes, all, records_and_blobs) = measured.expect("the tables' size settles");
        assert_eq!(file_bytes, all);
        assert!(
            file_bytes > records_and_blobs,
            "{file_bytes} {records_and_blobs}"
        );

        // With amcheck installed the check runs over every table and index, and finds nothing.
        admin
            .batch_execute("CREATE EXTENSION amcheck")
            .await
            .unwrap();
        store.store("bulk", "00001", &bulky(1)).await.unwrap();
        let report = store.maintenance().await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(outcome(&report, "integrity_check"), "0 problems");
        assert!(store.verify().await.unwrap().is_clean());
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_failing_step_is_reported_and_every_other_step_still_runs() {
    // A plain file where the backup repository should be: the backup step cannot create its
    // directory, and nothing else depends on it.
    let outside = tempfile::tempdir().unwrap();
    let not_a_directory = outside.path().join("backups");
    std::fs::write(&not_a_directory, b"not a repository").unwrap();
    let harness = Harness::sqlite_with(|config| {
        config.backup_repository = Some(not_a_directory.clone());
        config.cache_ttl_secs = 1;
        // The feed then holds only the last put, so the first value is released to the sweep.
        config.changes_retention_count = 1;
    })
    .await;
    harness
        .store
        .store("players", "alice", &bulky(1))
        .await
        .unwrap();
    harness
        .store
        .store("players", "alice", &bulky(2))
        .await
        .unwrap();
    harness
        .store
        .retrieve::<String>("players", "alice")
        .await
        .unwrap();
    // Let the cached value expire, so that the cache step after the failure has work to do.
    tokio::time::sleep(Duration::from_millis(1_300)).await;

    let report = harness.store.maintenance().await.unwrap();

    let names: Vec<&str> = report.steps.iter().map(|step| step.name).collect();
    assert_eq!(
        names,
        [
            "flush_read_counts",
            "sweep_expired",
            "trim_changes",
            "collect_orphans",
            "compress",
            "optimize",
            "vacuum",
            "backup",
            "checkpoint",
            "integrity_check",
            "cache_cleanup"
        ]
    );
    for step in &report.steps {
        assert_eq!(step.is_ok, step.name != "backup", "{step:?}");
    }
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].starts_with("backup: "),
        "{:?}",
        report.errors
    );
    assert!(report.backup.is_none());
    // Steps before and after the failure did their work.
    assert_eq!(report.released_blobs_removed, 1, "{report:?}");
    assert_eq!(report.cache_entries_evicted, 1, "{report:?}");
    assert!(report.integrity_problems.is_empty());
    assert_eq!(
        std::fs::read(&not_a_directory).unwrap(),
        b"not a repository",
        "the file was left alone"
    );
    harness.finish().await;
}
