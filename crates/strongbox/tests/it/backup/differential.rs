//! Differential backups: after a whole backup, the next ones of the same store hold only the
//! records that changed since it (added, replaced, removed), restore exactly, are built on
//! the same whole backup (never on another differential), give way to a whole backup once
//! their changes pass an eighth of the records, keep their base through a prune, and are
//! damaged with it, never silently wrong.

use strongbox::Error;
use strongbox::backup::{BackupRef, BackupSummary, Repository, RestoreOptions, Retention};

use super::{new_repository, restore, restored_contents, restores_equal, store_players, value};
use crate::common::Harness;

/// The base of backup `id` as `list` shows it.
async fn base_of(repository: &Repository, summary: &BackupSummary) -> Option<String> {
    let list = repository.list().await.unwrap();
    let info = list.iter().find(|info| info.id == summary.id).unwrap();
    assert!(info.damage.is_none(), "{info:?}");
    info.base.as_ref().map(ToString::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_after_a_few_changes_holds_only_them_and_restores_exactly() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 400).await;
    let whole = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(base_of(&repository, &whole).await, None);

    // Replaced, removed and added records, at the start, middle and end of the key order.
    for i in [0u64, 150, 399] {
        store
            .store("players", &format!("p{i}"), &value(10_000 + i))
            .await
            .unwrap();
    }
    for i in [1u64, 200, 398] {
        store.delete("players", &format!("p{i}")).await.unwrap();
    }
    store.store("boards", "b1", &value(7)).await.unwrap();
    store.store("players", "p9999", &value(8)).await.unwrap();
    let first = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        base_of(&repository, &first).await,
        Some(whole.id.to_string())
    );
    assert_eq!(first.records, 399);
    assert!(
        first.manifest_bytes * 10 < whole.manifest_bytes,
        "{} bytes of manifest against the whole backup's {}",
        first.manifest_bytes,
        whole.manifest_bytes
    );
    restores_equal(&repository, store, harness.dir.path(), "first.db").await;

    // The next differential is built on the same whole backup, holding every change since.
    store.delete("boards", "b1").await.unwrap();
    store.store("players", "p0", &value(20_000)).await.unwrap();
    let second = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        base_of(&repository, &second).await,
        Some(whole.id.to_string())
    );
    restores_equal(&repository, store, harness.dir.path(), "second.db").await;
    // The first differential still restores what it held.
    let target = harness.dir.path().join("at-first.db");
    restore(
        &repository,
        &BackupRef::Id(first.id.clone()),
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    let at_first = restored_contents(&target).await;
    assert!(at_first.contains_key(&("boards".to_owned(), "b1".to_owned())));
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());

    // A prune keeping only the newest keeps its base too.
    let report = repository.prune(&Retention::last(1)).await.unwrap();
    assert_eq!(report.kept, vec![whole.id.clone(), second.id.clone()]);
    assert_eq!(report.removed, vec![first.id.clone()]);
    restores_equal(&repository, store, harness.dir.path(), "pruned.db").await;
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_changes_make_the_next_backup_whole() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 160).await;
    let whole = repository.backup(store, |_| {}).await.unwrap();
    // 30 of 160 changed: more than an eighth, so the backup after this differential is whole.
    for i in 0..30u64 {
        store
            .store("players", &format!("p{i}"), &value(50_000 + i))
            .await
            .unwrap();
    }
    let differential = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        base_of(&repository, &differential).await,
        Some(whole.id.to_string())
    );
    let next = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(base_of(&repository, &next).await, None);
    restores_equal(&repository, store, harness.dir.path(), "whole.db").await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_base_damages_its_differentials_and_is_never_built_on() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 100).await;
    let whole = repository.backup(store, |_| {}).await.unwrap();
    store.store("players", "p5", &value(9_000)).await.unwrap();
    let differential = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        base_of(&repository, &differential).await,
        Some(whole.id.to_string())
    );

    // The base's manifest loses a byte at its end.
    let manifest = repository
        .dir()
        .join("manifests")
        .join(format!("{}.jsonl.zst", whole.id));
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() - 1]).unwrap();
    let list = repository.list().await.unwrap();
    let damage = |id| {
        list.iter()
            .find(|info| info.id == id)
            .and_then(|info| info.damage.clone())
            .unwrap_or_default()
    };
    assert!(!damage(whole.id.clone()).is_empty());
    let of_differential = damage(differential.id.clone());
    assert!(
        of_differential.contains(&format!("its base backup {}", whole.id)),
        "{of_differential}"
    );
    let target = harness.dir.path().join("refused.db");
    let refused = restore(
        &repository,
        &BackupRef::Id(differential.id.clone()),
        &target,
        RestoreOptions::all(),
    )
    .await;
    assert!(matches!(refused, Err(Error::Corrupt { .. })), "{refused:?}");

    // The next backup is whole: nothing is built on a damaged backup.
    let next = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(base_of(&repository, &next).await, None);
    restores_equal(&repository, store, harness.dir.path(), "next.db").await;
    harness.finish().await;
}
