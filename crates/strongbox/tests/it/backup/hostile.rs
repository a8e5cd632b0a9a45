//! A repository whose directory was tampered with: links to other directories, FIFOs in place
//! of manifests and blobs, decompression bombs, blobs linked to `/dev/zero`. Every command
//! returns promptly, deletes nothing outside the repository, reads within bounds, and one bad
//! file only affects the backups that need it.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use strongbox::Error;
use strongbox::backup::{BackupId, BackupRef, Repository, RestoreOptions, Retention};

use super::damage::{manifest_path, read_manifest};
use super::{
    blob_of, files_under, locate, new_repository, restore, restored_contents, store_players, value,
};
use crate::common::Harness;

/// Awaits `future`, failing the test if it takes longer than a healthy command ever does.
pub(super) async fn deadline<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} hung"),
    }
}

/// Lets a reader blocked on one of these FIFOs go when dropped (at the end of the test or
/// when it panics): opening a FIFO read-write never blocks, and counts as a writer that
/// arrives and leaves, so a blocked open returns and its reads see the end of the file.
pub(super) struct Unstick(pub Vec<PathBuf>);

impl Drop for Unstick {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = OpenOptions::new().read(true).write(true).open(path);
        }
    }
}

pub(super) fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`).
pub(super) fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib * 1024
}

/// The pack holding a value's blob.
pub(super) fn blob_path(repository: &Repository, value: &Value) -> PathBuf {
    locate(repository, value).0
}

fn corrupt_detail(error: &Error) -> &str {
    match error {
        Error::Corrupt { detail, .. } => detail,
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_deletes_through_a_link() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store.store("players", "alice", &value(1)).await.unwrap();
    repository.backup(store, |_| {}).await.unwrap();
    store.store("players", "alice", &value(2)).await.unwrap();
    // Differential on the first, then whole (its one change is all its records): the prune
    // below keeps only the whole one.
    repository.backup(store, |_| {}).await.unwrap();
    repository.backup(store, |_| {}).await.unwrap();
    // Someone else's files, which a link in the repository points at.
    let victim = harness.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("inner")).unwrap();
    std::fs::write(victim.join("precious.txt"), b"mine").unwrap();
    std::fs::write(victim.join("inner").join("deep.txt"), b"mine too").unwrap();

    // `tmp/` is a link to another directory: prune refuses, naming it, and deletes nothing.
    let tmp = repository.dir().join("tmp");
    std::fs::remove_dir(&tmp).unwrap();
    symlink(&victim, &tmp).unwrap();
    let error = deadline("prune", repository.prune(&Retention::last(1)))
        .await
        .unwrap_err();
    assert!(
        corrupt_detail(&error).contains(&tmp.display().to_string()),
        "{error}"
    );
    assert_eq!(files_under(&victim).len(), 2);
    assert_eq!(
        repository.list().await.unwrap_err().to_string(),
        error.to_string()
    );
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();

    // `packs/` is a link to a directory holding packs: refused, nothing deleted there.
    let packs = repository.dir().join("packs");
    let moved = harness.dir.path().join("moved-packs");
    std::fs::rename(&packs, &moved).unwrap();
    symlink(&moved, &packs).unwrap();
    let error = deadline("prune", repository.prune(&Retention::last(1)))
        .await
        .unwrap_err();
    assert!(
        corrupt_detail(&error).contains(&packs.display().to_string()),
        "{error}"
    );
    assert_eq!(files_under(&moved).len(), 4, "every pack is still there");
    let error = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap_err();
    assert!(corrupt_detail(&error).contains("packs"), "{error}");
    std::fs::remove_file(&packs).unwrap();
    std::fs::rename(&moved, &packs).unwrap();

    // A shard linked to another directory, and a pack-named link to a file: neither is
    // followed nor its target deleted; the pack holding nothing needed goes.
    let old_blob = blob_path(&repository, &value(1));
    let new_blob = blob_path(&repository, &value(2));
    let used: BTreeSet<String> = [&old_blob, &new_blob]
        .iter()
        .map(|path| path.file_name().unwrap().to_str().unwrap()[..2].to_owned())
        .collect();
    // A shard no pack uses (the backups' tree packs have shards of their own, besides the
    // two values' packs).
    let free = (0..=255u8)
        .map(|n| format!("{n:02x}"))
        .find(|shard| !used.contains(shard) && !packs.join(shard).exists())
        .unwrap();
    let planted = format!("{free}{}", "0".repeat(62));
    let elsewhere = harness.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join(&planted), b"not a pack").unwrap();
    let shard = packs.join(&free);
    assert!(!shard.exists());
    symlink(&elsewhere, &shard).unwrap();
    let shard_hex = &old_blob.file_name().unwrap().to_str().unwrap()[..2];
    let linked = old_blob.with_file_name(format!("{shard_hex}{}", "1".repeat(62)));
    symlink(victim.join("precious.txt"), &linked).unwrap();
    let report = deadline("prune", repository.prune(&Retention::last(1)))
        .await
        .unwrap();
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert!(!old_blob.exists());
    assert!(new_blob.exists());
    assert_eq!(
        std::fs::read(elsewhere.join(&planted)).unwrap(),
        b"not a pack"
    );
    assert_eq!(std::fs::read(victim.join("precious.txt")).unwrap(), b"mine");
    assert_eq!(files_under(&victim).len(), 2);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_named_like_a_manifest_hangs_no_command() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 5).await;
    let good = repository.backup(store, |_| {}).await.unwrap();
    // Newer than the good backup, so that `latest` has to skip it.
    let fifo_id = BackupId::parse("29991231T235959Z-0000f1f0").unwrap();
    let fifo = manifest_path(&repository, &fifo_id);
    mkfifo(&fifo);
    let _unstick = Unstick(vec![fifo.clone()]);

    let listed = deadline("list", repository.list()).await.unwrap();
    assert_eq!(listed.len(), 2);
    for info in &listed {
        assert_eq!(info.damage.is_some(), info.id == fifo_id, "{info:?}");
    }
    let report = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap();
    assert_eq!(report.backups_checked, 2);
    assert_eq!(report.damaged_backups(), BTreeSet::from([fifo_id.clone()]));
    let report = deadline("verify", repository.verify(Some(&fifo_id), |_| {}))
        .await
        .unwrap();
    assert!(
        report.damage[0].detail.contains("not a regular file"),
        "{report:?}"
    );

    let target = harness.dir.path().join("never.db");
    let which = BackupRef::Id(fifo_id.clone());
    let error = deadline(
        "restore",
        restore(&repository, &which, &target, RestoreOptions::all()),
    )
    .await
    .unwrap_err();
    corrupt_detail(&error);
    assert!(!target.exists());
    let target = harness.dir.path().join("latest.db");
    let restored = deadline(
        "restore",
        restore(
            &repository,
            &BackupRef::Latest,
            &target,
            RestoreOptions::all(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(restored.backup_id, good.id);
    assert_eq!(restored_contents(&target).await.len(), 5);

    let report = deadline("prune", repository.prune(&Retention::last(1)))
        .await
        .unwrap();
    assert_eq!(report.kept, [good.id]);
    assert!(report.sweep_skipped.is_some(), "{report:?}");
    assert_eq!(report.blobs_removed, 0);
    assert!(
        std::fs::symlink_metadata(&fifo).is_ok(),
        "left for a person"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_place_of_a_blob_hangs_neither_verify_nor_restore() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 3).await;
    let backup = repository.backup(store, |_| {}).await.unwrap();
    let fifo = blob_path(&repository, &value(1));
    std::fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo);
    let _unstick = Unstick(vec![fifo.clone()]);

    let report = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap();
    // The one pack holds all three values.
    assert_eq!(report.damage.len(), 3, "{report:?}");
    let damage = report
        .damage
        .iter()
        .find(|damage| damage.key.as_deref() == Some("p1"))
        .unwrap();
    assert_eq!(damage.blob_id, Some(blob_of(&value(1)).to_hex()));
    assert!(damage.detail.contains("not a regular file"), "{damage:?}");

    let target = harness.dir.path().join("never.db");
    let which = BackupRef::Id(backup.id);
    let error = deadline(
        "restore",
        restore(&repository, &which, &target, RestoreOptions::all()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "p0"),
        "{error}"
    );
    assert!(!target.exists());
    harness.finish().await;
}

/// One zstd frame of `prefix` then `length` copies of `byte`, in run-length blocks: a few bytes
/// per 128 KiB, so a file of about 64 KiB that decompresses to 2 GiB.
pub(super) fn zstd_bomb(prefix: &[u8], byte: u8, length: u64) -> Vec<u8> {
    const BLOCK: u64 = 128 << 10;
    // Magic number; no content size, no checksum; a window of 128 KiB.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let block_header = |frame: &mut Vec<u8>, last: bool, kind: u32, size: u64| {
        let header = u32::from(last) | (kind << 1) | (u32::try_from(size).unwrap() << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
    };
    for chunk in prefix.chunks(BLOCK as usize) {
        block_header(&mut frame, false, 0, chunk.len() as u64);
        frame.extend_from_slice(chunk);
    }
    let mut left = length;
    while left > 0 {
        let size = left.min(BLOCK);
        left -= size;
        block_header(&mut frame, left == 0, 1, size);
        frame.push(byte);
    }
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_bombs_are_refused_within_bounded_memory() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 5).await;
    let good = repository.backup(store, |_| {}).await.unwrap();
    // One whose header is a 2 GiB line, one whose first record is.
    let header_bomb = BackupId::parse("29990101T000000Z-000b0b01").unwrap();
    let record_bomb = BackupId::parse("29990101T000000Z-000b0b02").unwrap();
    let bomb = zstd_bomb(b"", b'a', 2 << 30);
    assert!(bomb.len() < 100 << 10);
    std::fs::write(manifest_path(&repository, &header_bomb), bomb).unwrap();
    let mut header: Value =
        serde_json::from_str(&read_manifest(&manifest_path(&repository, &good.id))[0]).unwrap();
    header["id"] = Value::from(record_bomb.as_str());
    let prefix = format!("{header}\n{{\"collection\":\"");
    std::fs::write(
        manifest_path(&repository, &record_bomb),
        zstd_bomb(prefix.as_bytes(), b'a', 2 << 30),
    )
    .unwrap();
    let bombs = BTreeSet::from([header_bomb, record_bomb]);
    let before = peak_rss();

    let listed = deadline("list", repository.list()).await.unwrap();
    assert_eq!(listed.len(), 3);
    for info in &listed {
        assert_eq!(info.damage.is_some(), bombs.contains(&info.id), "{info:?}");
        if let Some(damage) = &info.damage {
            assert!(damage.contains("longer than"), "{damage}");
        }
    }
    let report = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap();
    assert_eq!(report.damaged_backups(), bombs);
    for which in [BackupRef::Id(good.id.clone()), BackupRef::Latest] {
        let target = harness.dir.path().join(format!("{which}.db"));
        let restored = deadline(
            "restore",
            restore(&repository, &which, &target, RestoreOptions::all()),
        )
        .await
        .unwrap();
        assert_eq!(restored.backup_id, good.id);
        assert_eq!(restored_contents(&target).await.len(), 5);
    }
    let report = deadline("prune", repository.prune(&Retention::last(1)))
        .await
        .unwrap();
    assert!(report.sweep_skipped.is_some(), "{report:?}");
    assert_eq!(report.blobs_removed, 0);
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 1 << 30, "peak memory grew by {} MiB", grown >> 20);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_reads_are_bounded_by_what_the_manifest_says() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 4).await;
    let backup = repository.backup(store, |_| {}).await.unwrap();
    // The pack is now a sparse 4 GiB file of zeros: each value is read at its offset, no
    // more than its index length, and found damaged.
    let sparse = blob_path(&repository, &value(2));
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&sparse)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let before = peak_rss();

    let report = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap();
    let damaged: BTreeSet<(Option<String>, Option<String>)> = report
        .damage
        .iter()
        .map(|damage| (damage.blob_id.clone(), damage.key.clone()))
        .collect();
    assert_eq!(
        damaged,
        (0..4)
            .map(|i| (Some(blob_of(&value(i)).to_hex()), Some(format!("p{i}"))))
            .collect(),
        "{report:?}"
    );
    let target = harness.dir.path().join("never.db");
    let which = BackupRef::Id(backup.id.clone());
    let error = deadline(
        "restore",
        restore(&repository, &which, &target, RestoreOptions::all()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "p0"),
        "{error}"
    );
    assert!(!target.exists());
    // The other collections' records still restore.
    store.store("guilds", "red", &value(100)).await.unwrap();
    let second = repository.backup(store, |_| {}).await.unwrap();
    let options = RestoreOptions::all().collection("guilds");
    let target = harness.dir.path().join("guilds.db");
    deadline(
        "restore",
        restore(&repository, &BackupRef::Id(second.id), &target, options),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await.len(), 1);
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 1 << 30, "peak memory grew by {} MiB", grown >> 20);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_link_in_place_of_the_format_or_lock_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repository");
    let repository = Repository::open_or_create(&path).await.unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"mine").unwrap();

    // The lock file is a link: refused, and the file it points at is not touched.
    let lock = path.join("lock");
    std::fs::remove_file(&lock).unwrap();
    symlink(&victim, &lock).unwrap();
    let error = deadline("list", repository.list()).await.unwrap_err();
    assert!(corrupt_detail(&error).contains("symbolic link"), "{error}");
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"mine");

    // The format file is a FIFO: opening the repository fails at once.
    let format = path.join("strongbox-backup.json");
    std::fs::remove_file(&format).unwrap();
    mkfifo(&format);
    let _unstick = Unstick(vec![format.clone()]);
    for opened in [
        deadline("open", Repository::open(&path)).await,
        deadline("open", Repository::open_or_create(&path)).await,
    ] {
        let error = opened.unwrap_err();
        assert!(
            error.to_string().contains(&format.display().to_string()),
            "{error}"
        );
    }
}
