//! Reading backups without restoring them (records, one value, the diff of two), retention
//! policies and the prune dry run, restore of chosen keys, `check`, and waiting for the lock.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use serde_json::json;
use strongbox::backup::{
    BackupId, BackupRecord, BackupRef, DiffKind, ReadData, RecordDiff, Repository, RestoreOptions,
    Retention,
};
use strongbox::{Error, Store};

use super::{files_under, locate, new_repository, restore, restored_contents, value};
use crate::common::Harness;

async fn records(
    repository: &Repository,
    backup: &BackupRef,
    collection: Option<&str>,
) -> Vec<BackupRecord> {
    repository
        .records(backup, collection)
        .try_collect()
        .await
        .unwrap()
}

/// `players/p0..p4` and `tables/t0..t1`, one backup; returns its id.
async fn small_backup(store: &Store, repository: &Repository) -> BackupId {
    for i in 0..5u64 {
        store
            .store("players", &format!("p{i}"), &value(i))
            .await
            .unwrap();
    }
    for i in 0..2u64 {
        store
            .store("tables", &format!("t{i}"), &json!({"table": i}))
            .await
            .unwrap();
    }
    repository.backup(store, |_| {}).await.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lists_a_backup_in_key_order_and_filters_a_collection() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    let id = small_backup(&harness.store, &repository).await;
    let all = records(&repository, &BackupRef::Id(id.clone()), None).await;
    let names: Vec<(String, String)> = all
        .iter()
        .map(|record| (record.collection.clone(), record.key.clone()))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(all.len(), 7);
    assert!(
        all.iter()
            .all(|record| record.version == 1 && record.size_bytes > 0)
    );
    let tables = records(&repository, &BackupRef::Latest, Some("tables")).await;
    assert_eq!(tables.len(), 2);
    assert!(tables.iter().all(|record| record.collection == "tables"));
    assert!(
        records(&repository, &BackupRef::Latest, Some("nothing"))
            .await
            .is_empty()
    );
    let bad: Result<Vec<BackupRecord>, Error> = repository
        .records(&BackupRef::Latest, Some(""))
        .try_collect()
        .await;
    assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_returns_the_verified_value_and_none_for_an_absent_key() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    let id = small_backup(&harness.store, &repository).await;
    // A later write does not change what the backup holds.
    harness
        .store
        .store("players", "p1", &json!("new"))
        .await
        .unwrap();
    let found = repository
        .value(&BackupRef::Id(id), "players", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.value, value(1));
    assert_eq!(found.record.key, "p1");
    let absent = repository
        .value(&BackupRef::Latest, "players", "p9")
        .await
        .unwrap();
    assert!(absent.is_none());
    let unknown = BackupRef::Id(BackupId::parse("20200101T000000Z-00000000").unwrap());
    let missing = repository.value(&unknown, "players", "p1").await;
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
    // A damaged value is an error naming the record, never another value.
    let (pack, offset, _) = locate(&repository, &value(3));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[usize::try_from(offset).unwrap() + 2] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();
    let damaged = repository.value(&BackupRef::Latest, "players", "p3").await;
    assert!(
        matches!(&damaged, Err(Error::Corrupt { key: Some(key), .. }) if key == "p3"),
        "{damaged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_reports_added_removed_and_changed_records() {
    diff_of_two_backups(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_reports_added_removed_and_changed_records_on_postgres() {
    if let Some(harness) = Harness::postgres().await {
        diff_of_two_backups(harness).await;
    }
}

async fn diff_of_two_backups(harness: Harness) {
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let first = small_backup(store, &repository).await;
    store.delete("players", "p0").await.unwrap();
    store.store("players", "p2", &value(102)).await.unwrap();
    store.store("players", "p7", &value(7)).await.unwrap();
    store.store("zebras", "z", &json!(1)).await.unwrap();
    let second = repository.backup(store, |_| {}).await.unwrap().id;
    let diff: Vec<RecordDiff> = repository
        .diff(
            &BackupRef::Id(first.clone()),
            &BackupRef::Id(second.clone()),
        )
        .try_collect()
        .await
        .unwrap();
    let seen: Vec<(DiffKind, &str, &str)> = diff
        .iter()
        .map(|d| (d.kind, d.collection.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (DiffKind::Removed, "players", "p0"),
            (DiffKind::Changed, "players", "p2"),
            (DiffKind::Added, "players", "p7"),
            (DiffKind::Added, "zebras", "z"),
        ]
    );
    let changed = &diff[1];
    assert_eq!(changed.before.as_ref().unwrap().version, 1);
    assert_eq!(changed.after.as_ref().unwrap().version, 2);
    let same: Vec<RecordDiff> = repository
        .diff(&BackupRef::Id(second.clone()), &BackupRef::Latest)
        .try_collect()
        .await
        .unwrap();
    assert!(same.is_empty());
}

fn ids_at(times_ms: &[i64]) -> Vec<(BackupId, i64)> {
    times_ms
        .iter()
        .enumerate()
        .map(|(n, ms)| {
            let seconds = ms / 1000;
            let (days, rest) = (seconds / 86_400, seconds % 86_400);
            // Days after 2026-01-01 (a Thursday); 2026 has no leap day before December.
            let (month, day) = month_day(days);
            let id = format!(
                "2026{month:02}{day:02}T{:02}{:02}{:02}Z-{n:08x}",
                rest / 3600,
                rest % 3600 / 60,
                rest % 60
            );
            (BackupId::parse(&id).unwrap(), 1_767_225_600_000 + ms)
        })
        .collect()
}

fn month_day(days: i64) -> (i64, i64) {
    let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut left = days;
    for (month, length) in lengths.iter().enumerate() {
        if left < *length {
            return (month as i64 + 1, left + 1);
        }
        left -= length;
    }
    panic!("past 2026")
}

#[test]
fn keep_within_keeps_what_is_near_the_newest_and_the_newest_is_always_kept() {
    const HOUR: i64 = 3_600_000;
    // Every 12 hours for 10 days.
    let times: Vec<i64> = (0..20).map(|n| n * 12 * HOUR).collect();
    let all = ids_at(&times);
    let within = Retention::last(1).with_keep_within(Duration::from_secs(2 * 24 * 3600));
    let kept = within.select(&all);
    // The newest and the four before it within 48 hours.
    let expected: Vec<BackupId> = all[15..].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), expected);
    // A rule that keeps nothing of the last day still keeps the newest.
    let weekly = Retention {
        keep_last: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_within_secs: 1,
    };
    let newest = weekly.select(&all);
    assert_eq!(newest.len(), 1);
    assert!(newest.contains(&all[19].0));
    // Daily and within together: the union.
    let both = Retention {
        keep_last: 0,
        keep_daily: 3,
        keep_weekly: 0,
        keep_within_secs: 24 * 3600,
    };
    assert_eq!(
        both.select(&all).len(),
        4,
        "3 days' newest plus the one 12 hours before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_dry_run_deletes_nothing_and_matches_the_prune() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let mut ids = Vec::new();
    for round in 0..4u64 {
        store
            .store("items", &format!("i{round}"), &value(round))
            .await
            .unwrap();
        store
            .store("items", "shared", &value(100 + round))
            .await
            .unwrap();
        ids.push(repository.backup(store, |_| {}).await.unwrap().id);
    }
    let files_before = files_under(repository.dir());
    let plan = repository.plan_prune(&Retention::last(2)).await.unwrap();
    assert_eq!(
        files_under(repository.dir()),
        files_before,
        "a dry run deletes nothing"
    );
    assert_eq!(plan.removed, ids[..2]);
    assert_eq!(plan.kept, ids[2..]);
    assert!(plan.unreadable.is_empty() && plan.sweep_skipped.is_none());
    // Removed: two old `shared` values; `i0` and `i1` stay in the newer backups.
    assert_eq!(plan.blobs_removed, 2);
    assert!(plan.bytes_removed > 0);
    let report = repository.prune(&Retention::last(2)).await.unwrap();
    assert_eq!(report.removed, plan.removed);
    assert_eq!(report.kept, plan.kept);
    assert_eq!(report.blobs_removed, plan.blobs_removed);
    assert_eq!(report.blobs_kept, plan.blobs_kept);
    let none = Retention {
        keep_last: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_within_secs: 0,
    };
    let refused = repository.plan_prune(&none).await;
    assert!(
        matches!(refused, Err(Error::InvalidConfig(_))),
        "{refused:?}"
    );
    // keep_within of a day keeps every backup taken in this test.
    let within = Retention::last(1).with_keep_within(Duration::from_secs(86_400));
    let kept = repository.prune(&within).await.unwrap();
    assert_eq!(kept.kept, ids[2..]);
    assert!(kept.removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_chosen_keys_restores_only_them() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    small_backup(&harness.store, &repository).await;
    let target = harness.dir.path().join("keys.db");
    let options = RestoreOptions::all()
        .key("players", "p1")
        .key("players", "p3")
        .collection("tables");
    let summary = restore(&repository, &BackupRef::Latest, &target, options)
        .await
        .unwrap();
    assert_eq!(summary.records, 4);
    let restored = restored_contents(&target).await;
    let names: Vec<(&str, &str)> = restored
        .keys()
        .map(|(collection, key)| (collection.as_str(), key.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("players", "p1"),
            ("players", "p3"),
            ("tables", "t0"),
            ("tables", "t1")
        ]
    );
    assert_eq!(restored[&("players".into(), "p1".into())].0, value(1));
    // A key the backup lacks is refused before anything is written.
    let absent = harness.dir.path().join("absent.db");
    let refused = restore(
        &repository,
        &BackupRef::Latest,
        &absent,
        RestoreOptions::all()
            .key("players", "p1")
            .key("players", "p9"),
    )
    .await;
    assert!(
        matches!(&refused, Err(Error::InvalidName { what: "key", name, .. }) if name == "players/p9"),
        "{refused:?}"
    );
    assert!(!absent.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_missing_pack_without_reading_data_and_a_damaged_one_by_reading() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    small_backup(&harness.store, &repository).await;
    let clean = repository
        .check(None, ReadData::None, |_| {})
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.blobs_located, 7);
    assert!(clean.packs_checked >= 1);
    assert_eq!(clean.blobs_read, 0);
    let all = repository
        .check(None, ReadData::Subset { percent: 100 }, |_| {})
        .await
        .unwrap();
    assert!(all.is_clean() && all.blobs_read == 7, "{all:?}");
    // A flipped byte inside a value: the structure holds, reading finds it.
    let (pack, offset, _) = locate(&repository, &value(2));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[usize::try_from(offset).unwrap() + 2] ^= 0x55;
    std::fs::write(&pack, &bytes).unwrap();
    let structure = repository
        .check(None, ReadData::None, |_| {})
        .await
        .unwrap();
    assert!(structure.is_clean(), "{structure:?}");
    let read = repository.check(None, ReadData::All, |_| {}).await.unwrap();
    assert!(!read.is_clean());
    // A shortened pack is damage even without reading it.
    bytes.truncate(usize::try_from(offset).unwrap());
    std::fs::write(&pack, &bytes).unwrap();
    let short = repository
        .check(None, ReadData::None, |_| {})
        .await
        .unwrap();
    assert!(!short.is_clean());
    assert!(short.damage[0].detail.contains("shorter"), "{short:?}");
    let out_of_range = repository
        .check(None, ReadData::Subset { percent: 0 }, |_| {})
        .await;
    assert!(
        matches!(out_of_range, Err(Error::InvalidConfig(_))),
        "{out_of_range:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_noticed_and_given_up_after_the_timeout() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    small_backup(&harness.store, &repository).await;
    let notices = Arc::new(AtomicUsize::new(0));
    let told = Arc::clone(&notices);
    let waiting = repository
        .clone()
        .with_lock_timeout(Duration::from_millis(300))
        .with_lock_notice(move |notice| {
            assert!(
                notice
                    .to_string()
                    .contains("waiting for the repository lock held by")
            );
            told.fetch_add(1, Ordering::SeqCst);
        });
    // Another holder: an exclusive lock, as a prune takes.
    let holder = File::options()
        .read(true)
        .write(true)
        .open(repository.dir().join("lock"))
        .unwrap();
    holder.lock().unwrap();
    let refused = waiting.list().await;
    assert!(
        matches!(&refused, Err(Error::LockTimeout { waited_ms, .. }) if *waited_ms >= 300),
        "{refused:?}"
    );
    assert_eq!(notices.load(Ordering::SeqCst), 1);
    assert!(refused.unwrap_err().is_retryable());
    drop(holder);
    assert_eq!(waiting.list().await.unwrap().len(), 1);
    assert_eq!(
        notices.load(Ordering::SeqCst),
        1,
        "a free lock is taken silently"
    );
}

#[test]
fn the_backup_retention_setting_reads_old_files_and_keep_within() {
    let old: strongbox::Config = toml::from_str(
        "path = \"game.db\"\n[backup_retention]\nkeep_last = 3\nkeep_daily = 2\nkeep_weekly = 1\n",
    )
    .unwrap();
    assert_eq!(old.backup_retention.keep_last, 3);
    assert_eq!(old.backup_retention.keep_within(), Duration::ZERO);
    let within: strongbox::Config = toml::from_str(
        "path = \"game.db\"\nbackup_repository = \"backups\"\n\
         [backup_retention]\nkeep_last = 0\nkeep_daily = 0\nkeep_weekly = 0\nkeep_within_secs = 604800\n",
    )
    .unwrap();
    assert_eq!(
        within.backup_retention.keep_within(),
        Duration::from_secs(7 * 86_400)
    );
    assert!(within.validate().is_ok(), "keep_within alone is a rule");
    let mut none = within.clone();
    none.backup_retention.keep_within_secs = 0;
    assert!(matches!(none.validate(), Err(Error::InvalidConfig(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_releases_the_lock() {
    use futures_util::StreamExt as _;
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    // More records than the stream reads ahead, so that its thread waits to send.
    super::store_players(&harness.store, 600).await;
    repository.backup(&harness.store, |_| {}).await.unwrap();
    let mut stream = repository.records(&BackupRef::Latest, None);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.key, "p0");
    drop(stream);
    // A prune needs the lock exclusively: it gets it once the reading thread has stopped.
    let pruning = repository
        .clone()
        .with_lock_timeout(Duration::from_secs(10));
    let report = pruning.prune(&Retention::last(1)).await.unwrap();
    assert_eq!(report.kept.len(), 1);
}
