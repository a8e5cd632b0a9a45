//! Continuous backup (`Follower`) and restore to a point in time (`BackupRef::At`): each step
//! ships the changes since the last backup as a small backup that restores equal to the
//! store, an instant restores the state committed then, and the store's writers never wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strongbox::backup::{BackupRef, RestoreOptions};
use strongbox::{Error, Store};

use super::{contents, new_repository, restore, restored, restored_contents, store_players, value};
use crate::common::Harness;

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Changes 3 players, deletes 2 and adds 1 (other players in every round).
async fn change_a_few(store: &Store, round: u64) {
    for i in 0..3u64 {
        let key = format!("p{}", 3 * round + i);
        store
            .store("players", &key, &value(1_000 * round + i))
            .await
            .unwrap();
    }
    for i in 0..2u64 {
        let key = format!("p{}", 40 + 2 * round + i);
        store.delete("players", &key).await.unwrap();
    }
    store
        .store(
            "players",
            &format!("new{round}"),
            &value(1_000 * round + 500),
        )
        .await
        .unwrap();
}

async fn ships_changes_as_small_backups(harness: &Harness) {
    let store = &harness.store;
    let repository = new_repository(harness).await;
    store_players(store, 300).await;
    let mut follower = repository.follower(store);

    let first = follower.step().await.unwrap();
    assert!(first.is_full, "{first:?}");
    let full = first.backup.clone().unwrap();
    assert_eq!(full.records, 300);
    assert!(first.feed_seq >= 300, "{first:?}");

    let idle = follower.step().await.unwrap();
    assert_eq!(idle.backup, None, "nothing changed: {idle:?}");
    assert_eq!(idle.feed_seq, first.feed_seq);

    change_a_few(store, 1).await;
    let step = follower.step().await.unwrap();
    assert!(!step.is_full, "{step:?}");
    assert_eq!(step.changes, 6);
    assert_eq!(step.feed_seq, first.feed_seq + 6);
    let shipped = step.backup.clone().unwrap();
    assert_eq!(shipped.records, 299);
    assert_eq!(shipped.blobs_written, 4);
    assert!(
        shipped.bytes_written * 10 < full.bytes_written,
        "a step after 6 changes wrote {} bytes, the full backup {}",
        shipped.bytes_written,
        full.bytes_written
    );
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "followed.db"
        )
        .await,
        contents(store).await
    );

    // A new follower (a restarted `backup follow`) continues from the newest backup.
    change_a_few(store, 2).await;
    let mut restarted = repository.follower(store);
    let step = restarted.step().await.unwrap();
    assert!(!step.is_full, "{step:?}");
    assert_eq!(step.changes, 6);
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "restarted.db"
        )
        .await,
        contents(store).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ships_changes_as_small_backups_on_sqlite() {
    ships_changes_as_small_backups(&Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ships_changes_as_small_backups_on_postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    ships_changes_as_small_backups(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_at_an_instant_gives_the_state_committed_then() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 50).await;
    let mut follower = repository.follower(store);
    follower.step().await.unwrap();
    let mut states = Vec::new();
    for round in 0..3u64 {
        change_a_few(store, round + 1).await;
        follower.step().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        states.push((now_ms(), contents(store).await));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (round, (at_ms, expected)) in states.iter().enumerate() {
        assert_eq!(
            &restored(
                &repository,
                &BackupRef::At(*at_ms),
                harness.dir.path(),
                format!("at-{round}.db")
            )
            .await,
            expected,
            "round {round}"
        );
    }
    let too_early = restore(
        &repository,
        &BackupRef::At(0),
        &harness.dir.path().join("early.db"),
        RestoreOptions::all(),
    )
    .await
    .unwrap_err();
    assert!(
        too_early.to_string().contains("at or before"),
        "{too_early}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_takes_a_full_backup_when_the_feed_was_trimmed_past_it() {
    let harness = Harness::sqlite_with(|config| config.changes_retention_count = 5).await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 60).await;
    let mut follower = repository.follower(store);
    assert!(follower.step().await.unwrap().is_full);
    change_a_few(store, 1).await;
    change_a_few(store, 2).await;
    assert!(store.trim_changes().await.unwrap() > 0);
    let step = follower.step().await.unwrap();
    assert!(step.is_full, "{step:?}");
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "after-trim.db"
        )
        .await,
        contents(store).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_needs_the_change_feed() {
    let harness = Harness::sqlite_with(|config| config.change_feed = false).await;
    let repository = new_repository(&harness).await;
    let error = repository
        .follower(&harness.store)
        .step()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
}

/// Writers run while the follower steps every 200 ms: no step needs a full snapshot, the
/// last backup restores equal to the store, and the recovery point (the longest a write
/// could wait to be shipped) is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_under_concurrent_writes_keeps_up_and_restores_exactly() {
    let harness = Harness::sqlite().await;
    let store = harness.store.clone();
    let repository = new_repository(&harness).await;
    store_players(&store, 200).await;
    let mut follower = repository.follower(&store);
    follower.step().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for task in 0..8u64 {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("p{}", (task * 7 + written * 13) % 200);
                store
                    .store("players", &key, &value(task * 1_000_000 + written))
                    .await
                    .unwrap();
                written += 1;
            }
            written
        }));
    }
    let started = Instant::now();
    let mut previous_start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut steps = 0;
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let step_start = Instant::now();
        let step = follower.step().await.unwrap();
        assert!(!step.is_full, "{step:?}");
        // A write acknowledged just after the previous step read the feed waited until now.
        worst = worst.max(previous_start.elapsed());
        previous_start = step_start;
        steps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    let last = follower.step().await.unwrap();
    assert!(last.backup.is_some());
    println!(
        "follow: {steps} steps over {written} writes; recovery point at most {} ms",
        worst.as_millis()
    );
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "final.db"
        )
        .await,
        contents(&store).await
    );
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_ships_writes_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let repository_dir = dir.path().join("repository");
    let mut config = strongbox::Config::new(dir.path().join("store.db"));
    config.backup_repository = Some(repository_dir.clone());
    config.backup_interval_secs = 0;
    config.backup_follow_secs = 1;
    let store = Store::open(config).await.unwrap();
    store_players(&store, 30).await;
    let written = Instant::now();
    let repository = strongbox::backup::Repository::open_or_create(&repository_dir)
        .await
        .unwrap();
    let target = dir.path().join("restored.db");
    loop {
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "the background task shipped nothing in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(list) = repository.list().await else {
            continue;
        };
        let Some(newest) = list.last() else {
            continue;
        };
        if newest.records == 30 {
            restore(
                &repository,
                &BackupRef::Latest,
                &target,
                RestoreOptions::all(),
            )
            .await
            .unwrap();
            break;
        }
    }
    println!(
        "background follow: shipped after {} ms",
        written.elapsed().as_millis()
    );
    assert_eq!(restored_contents(&target).await, contents(&store).await);
    store.close().await.unwrap();
}

#[tokio::test]
async fn continuous_backup_needs_a_repository_and_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = strongbox::Config::new(dir.path().join("store.db"));
    config.backup_follow_secs = 5;
    let error = Store::open(config.clone()).await.unwrap_err();
    assert!(error.to_string().contains("backup_repository"), "{error}");
    config.backup_repository = Some(dir.path().join("repository"));
    config.change_feed = false;
    let error = Store::open(config).await.unwrap_err();
    assert!(error.to_string().contains("change_feed"), "{error}");
}
