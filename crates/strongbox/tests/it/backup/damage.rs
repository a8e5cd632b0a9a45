//! Damage is found and named, never used: corrupted and missing blobs, truncated, edited and
//! path-naming manifests, repositories of a newer format.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use strongbox::Error;
use strongbox::backup::{BackupId, BackupRef, Repository, RestoreOptions, Retention};

use super::{blob_of, locate, new_repository, restore, restored_contents, value};
use crate::common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_corrupted_blob_and_the_key_needing_it() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for i in 0..20u64 {
        store
            .store("players", &format!("p{i:02}"), &value(i))
            .await
            .unwrap();
    }
    let older = repository.backup(store, |_| {}).await.unwrap();
    store.store("players", "p07", &value(777)).await.unwrap();
    store.store("players", "p08", &value(888)).await.unwrap();
    let newer = repository.backup(store, |_| {}).await.unwrap();

    // Flip a byte of p07's new value, and delete p08's.
    // Both are in the pack the newer backup wrote, p07's first: cutting the pack where p08's
    // value starts loses it.
    let damaged = blob_of(&value(777));
    let hex = damaged.to_hex();
    let (path, offset, length) = locate(&repository, &value(777));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset + length / 2) as usize] ^= 0x20;
    let missing = blob_of(&value(888)).to_hex();
    let (cut_pack, cut_at, _) = locate(&repository, &value(888));
    assert_eq!(cut_pack, path);
    bytes.truncate(cut_at as usize);
    std::fs::write(&path, bytes).unwrap();

    let report = repository.verify(None, |_| {}).await.unwrap();
    assert_eq!(report.backups_checked, 2);
    assert_eq!(report.damaged_backups(), BTreeSet::from([newer.id.clone()]));
    assert_eq!(report.damage.len(), 2, "{:?}", report.damage);
    let corrupted = report
        .damage
        .iter()
        .find(|d| d.blob_id.as_deref() == Some(hex.as_str()))
        .unwrap();
    assert_eq!(
        (corrupted.collection.as_deref(), corrupted.key.as_deref()),
        (Some("players"), Some("p07"))
    );
    assert_eq!(corrupted.records_affected, 1);
    assert!(corrupted.detail.contains("damaged"), "{}", corrupted.detail);
    let gone = report
        .damage
        .iter()
        .find(|d| d.blob_id.as_deref() == Some(missing.as_str()))
        .unwrap();
    assert_eq!(gone.key.as_deref(), Some("p08"));
    assert!(gone.detail.contains("shorter"), "{}", gone.detail);
    assert!(
        repository
            .verify(Some(&older.id), |_| {})
            .await
            .unwrap()
            .is_clean()
    );

    // The damaged backup does not restore, and leaves nothing; the older one does.
    let target = harness.dir.path().join("restored.db");
    let error = restore(
        &repository,
        &BackupRef::Id(newer.id.clone()),
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "p07" || key == "p08"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(harness.dir.path()).unwrap().count(),
        4,
        "test.db, -wal, -shm, repository"
    );
    restore(
        &repository,
        &BackupRef::Id(older.id),
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await.len(), 20);
    harness.finish().await;
}

pub(super) fn manifest_path(repository: &Repository, id: &BackupId) -> PathBuf {
    repository
        .dir()
        .join("manifests")
        .join(format!("{id}.jsonl.zst"))
}

pub(super) fn read_manifest(path: &Path) -> Vec<String> {
    let text = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes a manifest from its header and record lines, with a correct end line (checksum and
/// totals): what an attacker or a buggy tool could produce.
pub(super) fn write_manifest(path: &Path, lines: &[String]) {
    let mut body = String::new();
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    let records: Vec<Value> = lines[1..]
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let blobs: BTreeSet<String> = records
        .iter()
        .filter_map(|record| Some(record.get("blob")?.as_str()?.to_owned()))
        .collect();
    let logical_bytes = records
        .iter()
        .filter_map(|record| record.get("size_bytes")?.as_u64())
        .fold(0u64, u64::wrapping_add);
    let end = json!({ "end": {
        "records": lines.len() - 1,
        "blobs": blobs.len(),
        "logical_bytes": logical_bytes,
        "checksum": blake3::hash(body.as_bytes()).to_hex().to_string(),
    }});
    body.push_str(&format!("{end}\n"));
    std::fs::write(path, zstd::encode_all(body.as_bytes(), 3).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_manifests_are_detected_and_never_used() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    for i in 0..30u64 {
        store
            .store("players", &format!("p{i:02}"), &value(i))
            .await
            .unwrap();
    }
    let good = repository.backup(store, |_| {}).await.unwrap();
    let truncated = repository.backup(store, |_| {}).await.unwrap();
    let tampered = repository.backup(store, |_| {}).await.unwrap();

    // Truncated: cut the file in half.
    let path = manifest_path(&repository, &truncated.id);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    // Tampered: the header edited, the end line kept.
    let path = manifest_path(&repository, &tampered.id);
    let mut lines = read_manifest(&path);
    lines[0] = lines[0].replace("\"strongbox_version\":\"", "\"strongbox_version\":\"9");
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(&path, zstd::encode_all(body.as_bytes(), 3).unwrap()).unwrap();

    let listed = repository.list().await.unwrap();
    assert_eq!(listed.len(), 3);
    for info in &listed {
        assert_eq!(info.damage.is_some(), info.id != good.id, "{info:?}");
    }
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert_eq!(
        report.damaged_backups(),
        BTreeSet::from([truncated.id.clone(), tampered.id.clone()])
    );
    assert!(
        report.damage.iter().any(|d| d.detail.contains("checksum")),
        "{:?}",
        report.damage
    );
    for id in [&truncated.id, &tampered.id] {
        let target = harness.dir.path().join("never.db");
        let error = restore(
            &repository,
            &BackupRef::Id(id.clone()),
            &target,
            RestoreOptions::all(),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
        assert!(!target.exists());
    }
    // `latest` skips what cannot be read.
    let target = harness.dir.path().join("latest.db");
    let summary = restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(summary.backup_id, good.id);
    // Prune deletes no blob while a manifest is unreadable.
    let report = repository.prune(&Retention::last(1)).await.unwrap();
    assert!(report.sweep_skipped.is_some());
    assert_eq!(report.blobs_removed, 0);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_naming_paths_are_refused() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store.store("players", "alice", &value(1)).await.unwrap();
    let backup = repository.backup(store, |_| {}).await.unwrap();
    assert!(matches!(
        "../../etc/passwd".parse::<BackupRef>(),
        Err(Error::InvalidName {
            what: "backup id",
            ..
        })
    ));

    // A well-formed manifest (its checksum is right) whose header names a path.
    let lines = read_manifest(&manifest_path(&repository, &backup.id));
    let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
    header["id"] = json!("../../etc/passwd");
    let forged = BackupId::parse("20200101T000000Z-00000001").unwrap();
    write_manifest(
        &manifest_path(&repository, &forged),
        &[header.to_string(), lines[1].clone()],
    );
    // And one whose record names a path instead of a blob.
    let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
    let sneaky = BackupId::parse("20200101T000000Z-00000002").unwrap();
    header["id"] = json!(sneaky.as_str());
    let mut record: Value = serde_json::from_str(&lines[1]).unwrap();
    record["blob"] = json!("../../../../../../etc/passwd");
    write_manifest(
        &manifest_path(&repository, &sneaky),
        &[header.to_string(), record.to_string()],
    );

    for id in [&forged, &sneaky] {
        let target = harness.dir.path().join("never.db");
        let error = restore(
            &repository,
            &BackupRef::Id(id.clone()),
            &target,
            RestoreOptions::all(),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
        assert!(!target.exists());
    }
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert_eq!(report.damaged_backups(), BTreeSet::from([forged, sneaky]));
    harness.finish().await;
}

#[tokio::test]
async fn a_repository_of_a_newer_version_or_another_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repository");
    Repository::open_or_create(&path).await.unwrap();
    std::fs::write(
        path.join("strongbox-backup.json"),
        r#"{"format": "strongbox-backup", "version": 3}"#,
    )
    .unwrap();
    for opened in [
        Repository::open(&path).await,
        Repository::open_or_create(&path).await,
    ] {
        let error = opened.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidConfig(message) if message.contains("upgrade")),
            "{error}"
        );
    }
    // A repository of the first format (one file per value) is refused, saying what to do.
    std::fs::write(
        path.join("strongbox-backup.json"),
        r#"{"format": "strongbox-backup", "version": 1}"#,
    )
    .unwrap();
    let error = Repository::open(&path).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidConfig(message) if message.contains("create a new repository")),
        "{error}"
    );
    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    assert!(matches!(
        Repository::open_or_create(&other).await,
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Repository::open(dir.path().join("nothing")).await,
        Err(Error::InvalidConfig(_))
    ));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}
