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
    // Differential on the first (320 removals), then whole: the differential's changes are
    // more than an eighth of its records. Only the whole one is kept.
    let differential = repository.backup(store, |_| {}).await.unwrap();
    let kept = repository.backup(store, |_| {}).await.unwrap();
    assert_ne!(differential.id, kept.id);
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
    // One index per backup (three), and the prune's.
    assert_eq!(files_under(&repository.dir().join("index")).len(), 4);
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

/// Every chunk entry the indexes name: (chunk id, pack path, offset, length).
fn chunk_entries(
    repository: &strongbox::backup::Repository,
) -> Vec<(String, std::path::PathBuf, u64, u64)> {
    let mut chunks = Vec::new();
    for index in super::indexes(repository) {
        for pack in index["packs"].as_array().unwrap() {
            let id = pack["id"].as_str().unwrap();
            let path = repository.dir().join("packs").join(&id[..2]).join(id);
            for chunk in pack["chunks"].as_array().unwrap() {
                chunks.push((
                    chunk[0].as_str().unwrap().to_owned(),
                    path.clone(),
                    chunk[1].as_u64().unwrap(),
                    chunk[2].as_u64().unwrap(),
                ));
            }
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_or_index_damages_only_the_backups_needing_it() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 200).await;
    let older = repository.backup(store, |_| {}).await.unwrap();
    let expected = contents(store).await;
    let old_chunks: Vec<String> = chunk_entries(&repository)
        .into_iter()
        .map(|c| c.0)
        .collect();
    store
        .store("players", "p7", &super::value(7777))
        .await
        .unwrap();
    let newer = repository.backup(store, |_| {}).await.unwrap();
    // The newer backup wrote one chunk: the one holding p7. Flip a byte of it.
    let new_chunks: Vec<_> = chunk_entries(&repository)
        .into_iter()
        .filter(|chunk| !old_chunks.contains(&chunk.0))
        .collect();
    assert_eq!(new_chunks.len(), 1, "{new_chunks:?}");
    let (_, path, offset, length) = &new_chunks[0];
    let mut bytes = std::fs::read(path).unwrap();
    bytes[(offset + length / 2) as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();

    let report = repository.verify(None, |_| {}).await.unwrap();
    assert_eq!(
        report.damaged_backups(),
        std::collections::BTreeSet::from([newer.id.clone()]),
        "{report:?}"
    );
    assert!(report.damage[0].detail.contains("chunk"), "{report:?}");
    let target = harness.dir.path().join("never.db");
    let error = restore(
        &repository,
        &BackupRef::Id(newer.id.clone()),
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, strongbox::Error::Corrupt { .. }), "{error}");
    let target = harness.dir.path().join("older.db");
    restore(
        &repository,
        &BackupRef::Id(older.id.clone()),
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await, expected);

    // A damaged index: what it names is unknown, so the backups needing it are damaged (with
    // the index named), and prune deletes no pack.
    let index = files_under(&repository.dir().join("index"))[0].clone();
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&index, bytes).unwrap();
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report
            .damage
            .iter()
            .any(|damage| damage.detail.contains("index")),
        "{report:?}"
    );
    let packs_before = files_under(&repository.dir().join("packs")).len();
    let pruned = repository.prune(&Retention::last(1)).await.unwrap();
    assert!(pruned.sweep_skipped.is_some(), "{pruned:?}");
    assert_eq!(
        files_under(&repository.dir().join("packs")).len(),
        packs_before
    );
    harness.finish().await;
}
