//! Backups of a live store: a consistent instant under concurrent transfers, incremental cost,
//! a backup killed midway, and moving a store between backends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use strongbox::backup::{BackupRef, RestoreOptions, Retention};
use strongbox::{Config, Error, Expect, Store};
use tokio::task::JoinSet;

use super::{
    Contents, contents, files_under, indexed_blobs, new_repository, restore, restored_contents,
    value,
};
use crate::common::{Harness, ScratchDatabase};

/// Moves money between accounts until told to stop; each transfer also appends a ledger
/// record naming both accounts, in the same transaction.
async fn transfer_until(
    store: Store,
    task: u64,
    accounts: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let from = (task * 7 + n * 13) % accounts;
        let to = (from + 1 + n % (accounts - 1)) % accounts;
        let (from_key, to_key) = (format!("acct-{from:03}"), format!("acct-{to:03}"));
        let from_record = store
            .retrieve_record::<i64>("accounts", &from_key)
            .await
            .unwrap()
            .unwrap();
        let to_record = store
            .retrieve_record::<i64>("accounts", &to_key)
            .await
            .unwrap()
            .unwrap();
        let amount = i64::try_from(n % 50).unwrap() + 1;
        let mut tx = store.transaction();
        tx.store_if(
            "accounts",
            &from_key,
            &(from_record.value - amount),
            Expect::Version(from_record.meta.version),
        )
        .unwrap();
        tx.store_if(
            "accounts",
            &to_key,
            &(to_record.value + amount),
            Expect::Version(to_record.meta.version),
        )
        .unwrap();
        tx.store(
            "ledger",
            &format!("{task}-{n:06}"),
            &json!({ "from": from_key, "to": to_key, "amount": amount }),
        )
        .unwrap();
        match tx.commit().await {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::Conflict { .. }) => {}
            Err(error) => panic!("transfer failed: {error}"),
        }
    }
}

/// The invariants of one instant: money is conserved, and every account's version counts
/// exactly the ledger records that name it (a torn transaction would break the count).
fn check_transfer_invariants(all: &Contents, accounts: u64) {
    let mut total = 0;
    let mut touched: BTreeMap<String, u64> = BTreeMap::new();
    for ((collection, _), (value, _)) in all {
        match collection.as_str() {
            "accounts" => total += value.as_i64().unwrap(),
            "ledger" => {
                for side in ["from", "to"] {
                    *touched
                        .entry(value[side].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
            }
            other => panic!("unexpected collection {other}"),
        }
    }
    assert_eq!(total, i64::try_from(accounts).unwrap() * 1000);
    for account in 0..accounts {
        let key = format!("acct-{account:03}");
        let (_, version) = &all[&("accounts".to_owned(), key.clone())];
        assert_eq!(
            version - 1,
            touched.get(&key).copied().unwrap_or(0),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_transfers_restores_one_consistent_instant() {
    backup_under_concurrent_transfers(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_under_concurrent_transfers_restores_one_consistent_instant() {
    if let Some(harness) = Harness::postgres().await {
        backup_under_concurrent_transfers(harness).await;
    }
}

async fn backup_under_concurrent_transfers(harness: Harness) {
    const ACCOUNTS: u64 = 40;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for account in 0..ACCOUNTS {
        store
            .store("accounts", &format!("acct-{account:03}"), &1000i64)
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for task in 0..4 {
        tasks.spawn(transfer_until(
            store.clone(),
            task,
            ACCOUNTS,
            Arc::clone(&stop),
            Arc::clone(&done),
        ));
    }
    // Back up while transfers are committing.
    while done.load(Ordering::Relaxed) < 200 {
        tokio::task::yield_now().await;
    }
    let mut during = Vec::new();
    for _ in 0..3 {
        during.push(repository.backup(store, |_| {}).await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let quiet = repository.backup(store, |_| {}).await.unwrap();
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());

    for (n, summary) in during.iter().enumerate() {
        let path = harness.dir.path().join(format!("during-{n}.db"));
        let restored = restore(
            &repository,
            &BackupRef::Id(summary.id.clone()),
            &path,
            RestoreOptions::all(),
        )
        .await
        .unwrap();
        assert_eq!(restored.records, summary.records);
        let all = restored_contents(&path).await;
        assert_eq!(all.len() as u64, summary.records);
        check_transfer_invariants(&all, ACCOUNTS);
    }
    // Taken while nothing ran, the last backup equals the live store record for record,
    // versions and metadata included.
    let path = harness.dir.path().join("quiet.db");
    restore(
        &repository,
        &BackupRef::Latest,
        &path,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    let live = contents(store).await;
    check_transfer_invariants(&live, ACCOUNTS);
    assert_eq!(restored_contents(&path).await, live);
    let restored = Store::open(Config::new(&path)).await.unwrap();
    for key in ["acct-000", "acct-017", "acct-039"] {
        let original = store
            .retrieve_record::<i64>("accounts", key)
            .await
            .unwrap()
            .unwrap()
            .meta;
        let copy = restored
            .retrieve_record::<i64>("accounts", key)
            .await
            .unwrap()
            .unwrap()
            .meta;
        assert_eq!(
            (
                copy.version,
                copy.created_at_ms,
                copy.updated_at_ms,
                copy.size_bytes
            ),
            (
                original.version,
                original.created_at_ms,
                original.updated_at_ms,
                original.size_bytes
            )
        );
    }
    restored.close().await.unwrap();
    assert_eq!(quiet.records, live.len() as u64);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_after_changing_one_percent_writes_about_one_percent() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for i in 0..2000u64 {
        store
            .store("players", &format!("p{i:05}"), &value(i))
            .await
            .unwrap();
    }
    let first = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        (first.records, first.blobs_total, first.blobs_written),
        (2000, 2000, 2000)
    );
    for i in (0..2000u64).step_by(100) {
        store
            .store("players", &format!("p{i:05}"), &value(10_000 + i))
            .await
            .unwrap();
    }
    let second = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(
        (second.records, second.blobs_total, second.blobs_written),
        (2000, 2000, 20)
    );
    let blob_bytes =
        |summary: &strongbox::backup::BackupSummary| summary.bytes_written - summary.manifest_bytes;
    let ratio = blob_bytes(&second) as f64 / blob_bytes(&first) as f64;
    assert!(
        (0.005..0.02).contains(&ratio),
        "new blob bytes are {ratio} of the first backup's"
    );
    // The manifest, which lists every record, is the rest; it is a small part of the store.
    assert!(
        second.bytes_written * 5 < first.bytes_written,
        "{second:?} against {first:?}"
    );
    assert_eq!(indexed_blobs(&repository).len(), 2020);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_leaves_the_repository_valid_and_prune_cleans_up() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for i in 0..300u64 {
        store
            .store("players", &format!("p{i:03}"), &value(i))
            .await
            .unwrap();
    }
    let kept = repository.backup(store, |_| {}).await.unwrap();
    for i in 0..300u64 {
        store
            .store("players", &format!("p{i:03}"), &value(1000 + i))
            .await
            .unwrap();
    }

    // Drop a backup while it is reading the store: its progress callback holds it still
    // until the future is gone.
    let (reached, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let reached = Mutex::new(Some(reached));
    let release_rx = Mutex::new(release_rx);
    let killed = repository.backup(store, move |_| {
        if let Some(reached) = reached.lock().unwrap().take() {
            reached.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        }
    });
    tokio::select! {
        _ = killed => panic!("the backup finished before it could be dropped"),
        _ = reached_rx => {}
    }
    release.send(()).unwrap();

    // Also what a power cut would leave: a half-written temporary file and a pack written
    // without their manifest.
    let stray = repository
        .dir()
        .join("tmp")
        .join("20200101T000000Z-0000beef");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("manifest"), b"(half a manifest)").unwrap();
    std::fs::write(stray.join("pack-1"), b"(half a pack)").unwrap();
    let mut orphans = Vec::new();
    for i in 0..3u64 {
        let raw = serde_json::to_vec(&value(90_000 + i)).unwrap();
        let blob = strongbox::blob::EncodedBlob::encode(
            &raw,
            strongbox::codec::Compression::default(),
            None,
        );
        // A pack no index names, as a backup killed before its index leaves.
        let hex = blake3::hash(&blob.stored).to_hex().to_string();
        let shard = repository.dir().join("packs").join(&hex[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&hex), &blob.stored).unwrap();
        orphans.push(shard.join(&hex));
    }

    let check = async || {
        let listed = repository.list().await.unwrap();
        assert_eq!(
            listed.iter().map(|info| &info.id).collect::<Vec<_>>(),
            [&kept.id]
        );
        assert!(listed[0].damage.is_none());
        assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    };
    check().await;
    // Prune waits for the dropped backup to let go of the repository, then sweeps.
    let report = repository.prune(&Retention::last(5)).await.unwrap();
    assert_eq!(report.kept, std::slice::from_ref(&kept.id));
    assert!(report.temp_files_removed >= 2, "{report:?}");
    assert!(report.packs_removed >= 3, "{report:?}");
    assert!(orphans.iter().all(|orphan| !orphan.exists()));
    assert!(files_under(&repository.dir().join("tmp")).is_empty());
    assert_eq!(indexed_blobs(&repository).len(), 300);
    check().await;
    let target = harness.dir.path().join("after.db");
    restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    let restored = restored_contents(&target).await;
    assert_eq!(
        restored[&("players".to_owned(), "p005".to_owned())].0,
        value(5)
    );
    // The store itself is untouched by all this, and backs up again.
    let next = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(next.blobs_written, 300);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_moves_a_store_between_backends() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for i in 0..200u64 {
        let collection = if i % 3 == 0 { "sessions" } else { "players" };
        store
            .store(collection, &format!("k{i:03}"), &value(i % 150))
            .await
            .unwrap();
    }
    store.store("players", "k001", &value(7)).await.unwrap();
    let from_sqlite = repository.backup(store, |_| {}).await.unwrap();
    let original = contents(store).await;

    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let postgres = Config::postgres(scratch.url());
    repository
        .restore(
            &BackupRef::Latest,
            &postgres,
            &RestoreOptions::all(),
            |_| {},
        )
        .await
        .unwrap();
    let moved = Store::open(postgres.clone()).await.unwrap();
    assert_eq!(contents(&moved).await, original);
    assert!(moved.verify().await.unwrap().is_clean());
    // The same values: a backup of the PostgreSQL copy adds only its manifest.
    let from_postgres = repository.backup(&moved, |_| {}).await.unwrap();
    assert_eq!(from_postgres.blobs_written, 0);
    assert_eq!(from_postgres.blobs_total, from_sqlite.blobs_total);
    // A second restore into the now non-empty database is refused.
    let error = repository
        .restore(
            &BackupRef::Latest,
            &postgres,
            &RestoreOptions::all(),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    moved.close().await.unwrap();

    let back = harness.dir.path().join("back.db");
    restore(
        &repository,
        &BackupRef::Id(from_postgres.id),
        &back,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&back).await, original);
    harness.finish().await;
}
