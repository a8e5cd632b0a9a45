//! Restore and retention: chosen collections, existing targets, and prune keeping exactly what
//! the remaining backups need.

use std::collections::BTreeSet;

use serde_json::Value;
use strongbox::backup::{BackupId, BackupRef, IfExists, RestoreOptions, Retention};
use strongbox::blob::BlobId;
use strongbox::{Config, Error, Store};

use super::{
    Contents, blob_of, contents, indexed_blobs, new_repository, restore, restored_contents, value,
};
use crate::common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_exactly_what_the_remaining_backups_need() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let mut expected: Vec<(BackupId, Contents)> = Vec::new();
    for round in 0..5u64 {
        // Each round rewrites some keys, deletes one and adds some.
        for i in 0..40u64 {
            if round == 0 || i % 4 == round % 4 {
                store
                    .store("items", &format!("i{i:03}"), &value(round * 1000 + i))
                    .await
                    .unwrap();
            }
        }
        store
            .delete("items", &format!("i{:03}", round * 3))
            .await
            .unwrap();
        store
            .store("extra", &format!("r{round}"), &value(50_000 + round))
            .await
            .unwrap();
        let summary = repository.backup(store, |_| {}).await.unwrap();
        expected.push((summary.id, contents(store).await));
    }
    let blob_files = || indexed_blobs(&repository).len() as u64;
    let before = blob_files();
    // The last two, and the base of either if it is differential (each round changes more
    // than an eighth of the records, so whole and differential backups alternate).
    let list = repository.list().await.unwrap();
    let mut keep: BTreeSet<BackupId> = list[3..].iter().map(|info| info.id.clone()).collect();
    keep.extend(list[3..].iter().filter_map(|info| info.base.clone()));
    assert_eq!(keep.len(), 3, "{list:?}");
    let (kept, removed): (Vec<_>, Vec<_>) = expected.iter().partition(|(id, _)| keep.contains(id));
    let report = repository.prune(&Retention::last(2)).await.unwrap();
    let ids_of = |backups: &[&(BackupId, Contents)]| -> Vec<BackupId> {
        backups.iter().map(|(id, _)| id.clone()).collect()
    };
    assert_eq!(report.removed, ids_of(&removed));
    assert_eq!(report.kept, ids_of(&kept));
    let needed: BTreeSet<BlobId> = kept
        .iter()
        .flat_map(|(_, all)| all.values().map(|(value, _)| blob_of(value)))
        .collect();
    assert_eq!(blob_files(), needed.len() as u64);
    assert_eq!(report.blobs_kept, needed.len() as u64);
    assert_eq!(report.blobs_removed, before - needed.len() as u64);
    assert!(report.blobs_removed > 0);
    assert!(report.sweep_skipped.is_none());
    let listed: Vec<BackupId> = repository
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.id)
        .collect();
    assert_eq!(listed, ids_of(&kept));
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    for (n, (id, all)) in kept.iter().enumerate() {
        let path = harness.dir.path().join(format!("kept-{n}.db"));
        restore(
            &repository,
            &BackupRef::Id(id.clone()),
            &path,
            RestoreOptions::all(),
        )
        .await
        .unwrap();
        assert_eq!(&restored_contents(&path).await, all);
    }
    // Pruning again with the same rule changes nothing.
    let again = repository.prune(&Retention::last(2)).await.unwrap();
    assert_eq!((again.removed.len(), again.blobs_removed), (0, 0));
    assert!(matches!(
        repository.prune(&Retention::last(0)).await,
        Err(Error::InvalidConfig(_))
    ));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_chosen_collections() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for collection in ["players", "sessions", "chat"] {
        for i in 0..10u64 {
            store
                .store(collection, &format!("k{i}"), &value(i))
                .await
                .unwrap();
        }
    }
    repository.backup(store, |_| {}).await.unwrap();
    let target = harness.dir.path().join("some.db");
    let options = RestoreOptions::all()
        .collection("players")
        .collection("chat");
    let summary = restore(&repository, &BackupRef::Latest, &target, options)
        .await
        .unwrap();
    assert_eq!(summary.records, 20);
    let restored = Store::open(Config::new(&target)).await.unwrap();
    assert_eq!(restored.collections().await.unwrap(), ["chat", "players"]);
    assert_eq!(
        restored.retrieve::<Value>("chat", "k3").await.unwrap(),
        Some(value(3))
    );
    restored.close().await.unwrap();

    let target = harness.dir.path().join("none.db");
    let error = restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all().collection("ghosts"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidName {
                what: "collection",
                ..
            }
        ),
        "{error}"
    );
    assert!(!target.exists());
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_an_existing_target_needs_replace_and_a_closed_store() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store.store("players", "alice", &value(1)).await.unwrap();
    repository.backup(store, |_| {}).await.unwrap();

    let target = harness.dir.path().join("precious.db");
    std::fs::write(&target, b"precious").unwrap();
    let before: BTreeSet<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let error = restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{error}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let after: BTreeSet<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);

    // A store open on the target: refused even with Replace.
    let live = harness.dir.path().join("live.db");
    let other = Store::open(Config::new(&live)).await.unwrap();
    other.store("players", "bob", &value(2)).await.unwrap();
    let replace = RestoreOptions::all().if_exists(IfExists::Replace);
    let error = restore(&repository, &BackupRef::Latest, &live, replace.clone())
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Io { .. }), "{error}");
    assert_eq!(
        other.retrieve::<Value>("players", "bob").await.unwrap(),
        Some(value(2))
    );
    other.close().await.unwrap();
    drop(other);

    for path in [&target, &live] {
        restore(&repository, &BackupRef::Latest, path, replace.clone())
            .await
            .unwrap();
        let restored = restored_contents(path).await;
        assert_eq!(
            restored.keys().cloned().collect::<Vec<_>>(),
            [("players".to_owned(), "alice".to_owned())]
        );
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_backs_up_and_restores() {
    let harness = Harness::sqlite().await;
    let repository = new_repository(&harness).await;
    let summary = repository.backup(&harness.store, |_| {}).await.unwrap();
    assert_eq!(
        (summary.records, summary.blobs_total, summary.blobs_written),
        (0, 0, 0)
    );
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    let target = harness.dir.path().join("empty.db");
    let restored = restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored.records, 0);
    assert!(restored_contents(&target).await.is_empty());
    harness.finish().await;
}

/// A backup keeps each record's expiry instant: restored before it, the record is there and
/// still expires on time; restored after it, the record is not brought back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_keeps_expiry_and_a_restore_does_not_resurrect_what_expired() {
    use std::time::{Duration, Instant};
    use strongbox::PutOptions;
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    let written = Instant::now();
    let ttl = PutOptions::new().ttl(Duration::from_secs(2));
    store
        .store_with("sessions", "short", &value(1), ttl)
        .await
        .unwrap();
    store.store("sessions", "kept", &value(2)).await.unwrap();
    let summary = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(summary.records, 2);

    let early = harness.dir.path().join("early.db");
    let restored = restore(
        &repository,
        &BackupRef::Latest,
        &early,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored.records, 2);
    let reopened = Store::open(Config::new(&early)).await.unwrap();
    let meta = reopened
        .retrieve_record::<Value>("sessions", "short")
        .await
        .unwrap()
        .expect("not expired yet")
        .meta;
    assert!(meta.expires_at_ms.is_some(), "{meta:?}");
    assert_eq!(reopened.stats().await.unwrap().storage.expiring, 1);
    reopened.close().await.unwrap();

    tokio::time::sleep_until((written + Duration::from_millis(2_100)).into()).await;
    let late = harness.dir.path().join("late.db");
    let restored = restore(
        &repository,
        &BackupRef::Latest,
        &late,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored.records, 1);
    let all = restored_contents(&late).await;
    let keys: Vec<&str> = all.keys().map(|(_, key)| key.as_str()).collect();
    assert_eq!(keys, ["kept"]);
    assert!(
        restored_contents(&early)
            .await
            .keys()
            .all(|(_, key)| key == "kept")
    );
    harness.finish().await;
}
