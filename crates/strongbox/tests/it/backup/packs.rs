//! Packs: prune repacks packs that became mostly garbage, and what an interrupted prune
//! leaves (two indexes naming the same values, packs no index names) verifies and restores.

use std::path::Path;

use strongbox::backup::{BackupRef, RestoreOptions, Retention};

use super::{
    contents, files_under, indexed_blobs, new_repository, pack_bytes, restore, restored_contents,
    store_players,
};
use crate::common::Harness;

/// Copies every file under `from` into `to`, keeping paths, leaving files already there.
fn merge_files(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        if !target.exists() {
            std::fs::copy(&file, &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_repacks_packs_that_became_mostly_garbage() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 400).await;
    repository.backup(store, |_| {}).await.unwrap();
    for i in 0..400u64 {
        if i % 5 != 0 {
            store.delete("players", &format!("p{i}")).await.unwrap();
        }
    }
    let kept = repository.backup(store, |_| {}).await.unwrap();
    let expected = contents(store).await;
    let before = pack_bytes(&repository);
    // The state before the prune, to rebuild what an interrupted prune leaves.
    let snapshot = harness.dir.path().join("before-prune");
    merge_files(repository.dir(), &snapshot);

    let report = repository.prune(&Retention::last(1)).await.unwrap();
    assert_eq!(report.kept, std::slice::from_ref(&kept.id));
    assert_eq!(report.packs_repacked, 1, "{report:?}");
    assert_eq!(report.blobs_removed, 320, "{report:?}");
    assert_eq!(indexed_blobs(&repository).len(), 80);
    let after = pack_bytes(&repository);
    assert!(
        after * 3 < before,
        "{after} against {before} bytes of packs"
    );
    assert_eq!(files_under(&repository.dir().join("index")).len(), 1);
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    let target = harness.dir.path().join("after.db");
    restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await, expected);

    // A prune killed after writing its new index but before deleting the old indexes and
    // packs leaves both; one killed after deleting the indexes leaves the old packs. The
    // union of the two states is a repository that verifies and restores, and the next
    // prune brings it back to the pruned one.
    for stale in ["index", "packs"] {
        merge_files(&snapshot.join(stale), &repository.dir().join(stale));
    }
    assert_eq!(files_under(&repository.dir().join("index")).len(), 3);
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    let target = harness.dir.path().join("interrupted.db");
    restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await, expected);
    let again = repository.prune(&Retention::last(1)).await.unwrap();
    assert!(again.packs_removed >= 1, "{again:?}");
    assert_eq!(pack_bytes(&repository), after);
    assert_eq!(files_under(&repository.dir().join("index")).len(), 1);
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    harness.finish().await;
}
