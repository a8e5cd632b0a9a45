//! What a restore leaves and what it refuses: temporaries of killed restores are removed by
//! the next restore into the same file (only when provably abandoned), and `verify` reports
//! every manifest `restore` would reject.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::symlink;

use serde_json::{Value, json};
use strongbox::backup::{BackupId, BackupRef, RestoreOptions};
use strongbox::{Config, Error, Store};

use super::damage::{manifest_path, read_manifest, write_manifest};
use super::hostile::deadline;
use super::{new_repository, restore, restored_contents, store_players};
use crate::common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_restore_removes_what_killed_restores_left() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 10).await;
    let backup = repository.backup(store, |_| {}).await.unwrap();
    let which = BackupRef::Id(backup.id.clone());
    let database = harness.dir.path().join("first.db");
    restore(&repository, &which, &database, RestoreOptions::all())
        .await
        .unwrap();

    // What killed restores into `restores/game.db` left: a database with its log...
    let dir = harness.dir.path().join("restores");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("game.db");
    let temporary = |suffix: &str| dir.join(format!(".game.db.restore-{suffix}"));
    let abandoned = temporary("deadbeef");
    std::fs::copy(&database, &abandoned).unwrap();
    std::fs::write(temporary("deadbeef-wal"), b"").unwrap();
    // ... a log without its database, and a lock file without anything.
    std::fs::write(temporary("00c0ffee-shm"), b"").unwrap();
    std::fs::write(temporary("0000abcd.lock"), b"").unwrap();
    // Still in use: one a store has open, one whose restore holds its lock file.
    let open = temporary("0badf00d");
    std::fs::copy(&database, &open).unwrap();
    let holder = Store::open(Config::new(&open)).await.unwrap();
    let locked = temporary("12345678");
    std::fs::copy(&database, &locked).unwrap();
    let lock = File::create(temporary("12345678.lock")).unwrap();
    lock.lock().unwrap();
    // Not ours: another name, and a link (to a file that is not to be touched).
    let other = temporary("notours!");
    std::fs::write(&other, b"someone else's").unwrap();
    let victim = harness.dir.path().join("victim.txt");
    std::fs::write(&victim, b"mine").unwrap();
    let link = temporary("cafef00d");
    symlink(&victim, &link).unwrap();

    deadline(
        "restore",
        restore(&repository, &which, &target, RestoreOptions::all()),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await.len(), 10);
    let names = || -> BTreeSet<String> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let expected = |extra: &[&str]| -> BTreeSet<String> {
        [
            "game.db",
            ".game.db.restore-notours!",
            ".game.db.restore-cafef00d",
        ]
        .iter()
        .chain(extra)
        .map(|name| (*name).to_owned())
        .collect()
    };
    let mut left = names();
    left.retain(|name| !name.starts_with(".game.db.restore-0badf00d-"));
    assert_eq!(
        left,
        expected(&[
            ".game.db.restore-0badf00d",
            ".game.db.restore-12345678",
            ".game.db.restore-12345678.lock",
        ])
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"mine");

    // Once their holders are gone, the next restore into that file removes them, even when it
    // then refuses to overwrite the target.
    holder.close().await.unwrap();
    drop(holder);
    drop(lock);
    let error = restore(&repository, &which, &target, RestoreOptions::all())
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Io { .. }), "{error}");
    assert_eq!(names(), expected(&[]));
    assert_eq!(std::fs::read(&other).unwrap(), b"someone else's");
    assert_eq!(std::fs::read(&victim).unwrap(), b"mine");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_every_manifest_restore_rejects() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let repository = new_repository(&harness).await;
    store_players(store, 4).await;
    let good = repository.backup(store, |_| {}).await.unwrap();
    let lines = read_manifest(&manifest_path(&repository, &good.id));
    let records = &lines[1..lines.len() - 1];

    // Well-formed, correctly signed manifests, each with one record restore cannot use.
    let edits: [(&str, Value); 5] = [
        ("format", json!(9)),
        ("size_bytes", json!(1)),
        ("version", json!(0)),
        ("access_count", json!(u64::MAX)),
        ("size_bytes", json!(1u64 << 40)),
    ];
    let mut forged = BTreeSet::new();
    for (n, (field, edit)) in edits.into_iter().enumerate() {
        let id = BackupId::parse(&format!("20200101T000000Z-{n:08x}")).unwrap();
        let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
        header["id"] = json!(id.as_str());
        let mut body = vec![header.to_string()];
        for (index, line) in records.iter().enumerate() {
            let mut record: Value = serde_json::from_str(line).unwrap();
            if index == 1 {
                record[field] = edit.clone();
            }
            body.push(record.to_string());
        }
        write_manifest(&manifest_path(&repository, &id), &body);
        forged.insert(id);
    }

    let report = deadline("verify", repository.verify(None, |_| {}))
        .await
        .unwrap();
    assert_eq!(report.damaged_backups(), forged, "{:?}", report.damage);
    for id in &forged {
        let report = repository.verify(Some(id), |_| {}).await.unwrap();
        assert!(!report.is_clean(), "{id}");
        let target = harness.dir.path().join("never.db");
        let which = BackupRef::Id(id.clone());
        let error = restore(&repository, &which, &target, RestoreOptions::all())
            .await
            .unwrap_err();
        assert!(matches!(&error, Error::Corrupt { .. }), "{id}: {error}");
        assert!(!target.exists());
    }
    let target = harness.dir.path().join("good.db");
    let which = BackupRef::Id(good.id.clone());
    restore(&repository, &which, &target, RestoreOptions::all())
        .await
        .unwrap();
    assert_eq!(restored_contents(&target).await.len(), 4);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creations_of_one_repository_all_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let repository = repository.clone();
        creators
            .spawn(async move { strongbox::backup::Repository::open_or_create(&repository).await });
    }
    while let Some(created) = creators.join_next().await {
        created.unwrap().unwrap();
    }
    let tmp = std::fs::read_dir(repository.join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "a creator left its temporary format file");
}
