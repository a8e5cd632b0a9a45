//! Encrypted repositories: backups round trip with a passphrase or a key file, a missing or
//! wrong key is `Error::RepositoryKey`, nothing in the repository shows a value or its hash,
//! a changed byte in any object is damage of the backups needing it only, incremental backups
//! still dedupe, and (with `STRONGBOX_BACKUP_SAMPLE`) what encryption costs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};
use strongbox::backup::{
    BackupRef, BackupSummary, Repository, RepositoryKey, RestoreOptions, Retention,
};
use strongbox::{Config, Error, KeyProblem, Store};

use super::{Contents, blob_of, contents, files_under, restore, restored_contents, store_players};
use crate::common::Harness;

const PASSPHRASE: &str = "correct horse battery staple";

fn passphrase() -> RepositoryKey {
    RepositoryKey::passphrase(PASSPHRASE)
}

async fn new_encrypted(harness: &Harness) -> Repository {
    Repository::create_encrypted(harness.dir.path().join("repository"), &passphrase())
        .await
        .unwrap()
}

/// The repository's files, as they are now.
fn file_set(repository: &Repository) -> BTreeSet<PathBuf> {
    files_under(repository.dir()).into_iter().collect()
}

/// Flips one byte in the middle of `path`.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

async fn round_trip(harness: &Harness, key: RepositoryKey) {
    let store = &harness.store;
    store_players(store, 40).await;
    let dir = harness.dir.path().join("repository");
    let repository = Repository::create_encrypted(&dir, &key).await.unwrap();
    assert!(repository.is_encrypted());
    let first = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!((first.records, first.blobs_written), (40, 40));
    let expected = contents(store).await;

    // A new handle with the same key reads what the first wrote.
    let reopened = Repository::open_with_key(&dir, &key).await.unwrap();
    let listed = reopened.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].damage, None);
    assert_eq!(listed[0].records, 40);
    assert!(reopened.verify(None, |_| {}).await.unwrap().is_clean());
    let target = harness.dir.path().join("restored.db");
    let summary = restore(
        &reopened,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(summary.records, 40);
    assert_eq!(restored_contents(&target).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_round_trips_through_a_passphrase_repository() {
    let harness = Harness::sqlite().await;
    round_trip(&harness, passphrase()).await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_round_trips_through_a_key_file_repository() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    let key_file = harness.dir.path().join("repository.key");
    std::fs::write(&key_file, [0x5a; 32]).unwrap();
    round_trip(&harness, RepositoryKey::from_file(&key_file).unwrap()).await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_the_repository_key_error() {
    let harness = Harness::sqlite().await;
    let repository = new_encrypted(&harness).await;
    let dir = repository.dir().to_owned();
    let problem = |error: Error| match error {
        Error::RepositoryKey { problem, .. } => problem,
        other => panic!("not a key error: {other:?}"),
    };
    let missing = problem(Repository::open(&dir).await.unwrap_err());
    assert_eq!(missing, KeyProblem::Missing);
    let missing = Repository::open_or_create(&dir).await.unwrap_err();
    assert_eq!(missing.kind().as_str(), "repository_key");
    assert!(
        missing.to_string().contains("passphrase or key file"),
        "{missing}"
    );
    let wrong = RepositoryKey::passphrase("correct horse battery stapler");
    let wrong = problem(Repository::open_with_key(&dir, &wrong).await.unwrap_err());
    assert_eq!(wrong, KeyProblem::Wrong);
    let key_file = RepositoryKey::from_bytes([7; 32]);
    let other = problem(
        Repository::open_with_key(&dir, &key_file)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        other,
        KeyProblem::OtherKind {
            needs: "passphrase"
        }
    );
    let created_again = Repository::create_encrypted(&dir, &passphrase()).await;
    assert!(matches!(created_again, Err(Error::InvalidConfig(_))));

    // A key for a plain repository, and a wrong key file.
    let plain = Repository::open_or_create(harness.dir.path().join("plain"))
        .await
        .unwrap();
    let not_encrypted = problem(
        Repository::open_with_key(plain.dir(), &passphrase())
            .await
            .unwrap_err(),
    );
    assert_eq!(not_encrypted, KeyProblem::NotEncrypted);
    let by_file = harness.dir.path().join("by-file");
    Repository::create_encrypted(&by_file, &key_file)
        .await
        .unwrap();
    let wrong_file = RepositoryKey::from_bytes([8; 32]);
    let wrong = problem(
        Repository::open_with_key(&by_file, &wrong_file)
            .await
            .unwrap_err(),
    );
    assert_eq!(wrong, KeyProblem::Wrong);
    // The passphrase never shows in what a key prints.
    assert!(!format!("{:?}", passphrase()).contains("horse"));
    harness.finish().await;
}

/// Values stored raw (too small to compress), so a plain repository holds their JSON as is.
fn secret(i: u64) -> Value {
    json!({ "secret": format!("plaintext-marker-{i:04}") })
}

/// Whether any file name or content of `dir` shows one of `needles`.
fn shows_any(dir: &Path, needles: &[Vec<u8>]) -> Option<String> {
    for path in files_under(dir) {
        let name = path.to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        for needle in needles {
            if name
                .as_bytes()
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
                || bytes.windows(needle.len()).any(|w| w == needle.as_slice())
            {
                return Some(format!("{name} shows {}", String::from_utf8_lossy(needle)));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_an_encrypted_repository_shows_a_value_or_its_hash() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    let mut needles = Vec::new();
    for i in 0..50 {
        store
            .store("vault", &format!("k{i}"), &secret(i))
            .await
            .unwrap();
        let id = blob_of(&secret(i));
        needles.push(id.to_hex().into_bytes());
        needles.push(id.as_bytes().to_vec());
        needles.push(format!("plaintext-marker-{i:04}").into_bytes());
    }
    needles.push(b"vault".to_vec());
    let encrypted = new_encrypted(&harness).await;
    let plain = Repository::open_or_create(harness.dir.path().join("plain"))
        .await
        .unwrap();
    for repository in [&encrypted, &plain] {
        repository.backup(store, |_| {}).await.unwrap();
        store.store("vault", "k0", &secret(1000)).await.unwrap();
        repository.backup(store, |_| {}).await.unwrap();
        store.store("vault", "k0", &secret(0)).await.unwrap();
    }
    // The check finds them where they are: in the plain repository.
    assert!(shows_any(plain.dir(), &needles).is_some());
    assert_eq!(shows_any(encrypted.dir(), &needles), None);
    harness.finish().await;
}

/// Two backups; between them `change` runs. Returns the backups and the files the second
/// one added.
async fn two_backups(
    store: &Store,
    repository: &Repository,
    change: impl AsyncFnOnce(&Store),
) -> (BackupSummary, Contents, BackupSummary, BTreeSet<PathBuf>) {
    let first = repository.backup(store, |_| {}).await.unwrap();
    let first_contents = contents(store).await;
    let before = file_set(repository);
    change(store).await;
    let second = repository.backup(store, |_| {}).await.unwrap();
    let added = file_set(repository).difference(&before).cloned().collect();
    (first, first_contents, second, added)
}

/// The added files under `dir` (`packs`, `index`, `manifests`), largest first.
fn added_under(repository: &Repository, added: &BTreeSet<PathBuf>, dir: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = added
        .iter()
        .filter(|path| path.starts_with(repository.dir().join(dir)))
        .cloned()
        .collect();
    found.sort_by_key(|path| std::cmp::Reverse(std::fs::metadata(path).unwrap().len()));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_any_object_damages_only_the_backups_needing_it() {
    for damaged in ["data pack", "index", "manifest", "manifest chunk"] {
        let harness = Harness::sqlite().await;
        let store = &harness.store;
        store_players(store, 20).await;
        let repository = new_encrypted(&harness).await;
        let (first, first_contents, second, added) = if damaged == "manifest chunk" {
            // Deleting keys adds no value: the second backup's only pack holds its chunks.
            two_backups(store, &repository, async |store: &Store| {
                for i in [3, 11] {
                    store.delete("players", &format!("p{i}")).await.unwrap();
                }
            })
            .await
        } else {
            two_backups(store, &repository, async |store: &Store| {
                for i in 20..40 {
                    store
                        .store("players", &format!("p{i}"), &super::value(i))
                        .await
                        .unwrap();
                }
            })
            .await
        };
        let packs = added_under(&repository, &added, "packs");
        let target = match damaged {
            "data pack" => {
                assert_eq!(packs.len(), 2, "a data pack and a tree pack: {added:?}");
                packs[0].clone()
            }
            "manifest chunk" => {
                assert_eq!(packs.len(), 1, "only a tree pack: {added:?}");
                packs[0].clone()
            }
            "index" => added_under(&repository, &added, "index")[0].clone(),
            _ => added_under(&repository, &added, "manifests")[0].clone(),
        };
        flip_a_byte(&target);

        let report = repository.verify(None, |_| {}).await.unwrap();
        assert_eq!(
            report.damaged_backups(),
            BTreeSet::from([second.id.clone()]),
            "{damaged}: {report:?}"
        );
        let restored = harness.dir.path().join("first.db");
        restore(
            &repository,
            &BackupRef::Id(first.id.clone()),
            &restored,
            RestoreOptions::all(),
        )
        .await
        .unwrap();
        assert_eq!(
            restored_contents(&restored).await,
            first_contents,
            "{damaged}"
        );
        let refused = restore(
            &repository,
            &BackupRef::Id(second.id.clone()),
            &harness.dir.path().join("second.db"),
            RestoreOptions::all(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(refused, Error::Corrupt { .. }),
            "{damaged}: {refused:?}"
        );
        harness.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_encrypted_backups_dedupe_and_prune_keeps_them_restorable() {
    let harness = Harness::sqlite().await;
    let store = &harness.store;
    store_players(store, 200).await;
    let repository = new_encrypted(&harness).await;
    let first = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(first.blobs_written, 200);
    let again = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(again.blobs_written, 0);
    store
        .store("players", "p7", &super::value(7_000))
        .await
        .unwrap();
    let changed = repository.backup(store, |_| {}).await.unwrap();
    assert_eq!(changed.blobs_written, 1);
    assert!(
        changed.bytes_written * 10 < first.bytes_written,
        "{changed:?} after {first:?}"
    );
    // Prune repacks what is left: its new packs are sealed too, and the latest restores.
    for i in 0..150 {
        store.delete("players", &format!("p{i}")).await.unwrap();
    }
    repository.backup(store, |_| {}).await.unwrap();
    let pruned = repository.prune(&Retention::last(1)).await.unwrap();
    assert!(
        pruned.packs_repacked + pruned.packs_removed > 0,
        "{pruned:?}"
    );
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    let target = harness.dir.path().join("latest.db");
    restore(
        &repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await, contents(store).await);
    harness.finish().await;
}

/// Bytes of every file of the repository.
fn repository_bytes(repository: &Repository) -> u64 {
    files_under(repository.dir())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

/// Backs `store` up into `repository`, restores it; returns the figures as a line.
async fn measure(harness: &Harness, repository: &Repository, name: &str) -> (u128, u128, u64) {
    let started = Instant::now();
    repository.backup(&harness.store, |_| {}).await.unwrap();
    let backup_ms = started.elapsed().as_millis();
    let target = harness.dir.path().join(format!("{name}.db"));
    let started = Instant::now();
    restore(
        repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    (
        backup_ms,
        started.elapsed().as_millis(),
        repository_bytes(repository),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_overhead_on_the_sample() {
    let Ok(sample) = std::env::var("STRONGBOX_BACKUP_SAMPLE") else {
        eprintln!("skipped: set STRONGBOX_BACKUP_SAMPLE to a JSON Lines sample to measure it");
        return;
    };
    let harness = Harness::sqlite().await;
    let mut records = 0;
    for line in std::fs::read_to_string(sample).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let (collection, key) = (
            record["collection"].as_str().unwrap(),
            record["key"].as_str().unwrap(),
        );
        harness
            .store
            .store(collection, key, &record["value"])
            .await
            .unwrap();
        records += 1;
    }
    let plain = Repository::open_or_create(harness.dir.path().join("plain"))
        .await
        .unwrap();
    let started = Instant::now();
    let encrypted = new_encrypted(&harness).await;
    let create_ms = started.elapsed().as_millis();
    // Each is measured twice, alternating, so that neither has the warm cache alone.
    let mut lines = vec![format!(
        "{records} records; creating the encrypted repository (Argon2id) took {create_ms} ms"
    )];
    for round in 1..=2 {
        for (name, repository) in [("plain", &plain), ("encrypted", &encrypted)] {
            let (backup_ms, restore_ms, bytes) =
                measure(&harness, repository, &format!("{name}-{round}")).await;
            lines.push(format!(
                "round {round} {name:>9}: backup {backup_ms} ms, restore {restore_ms} ms, \
                 repository {bytes} bytes"
            ));
        }
    }
    let (plain_bytes, encrypted_bytes) = (repository_bytes(&plain), repository_bytes(&encrypted));
    lines.push(format!(
        "size: encrypted / plain = {:.4} (+{} bytes)",
        encrypted_bytes as f64 / plain_bytes as f64,
        encrypted_bytes.saturating_sub(plain_bytes)
    ));
    println!("encryption overhead:\n{}", lines.join("\n"));
    // Each object costs 40 bytes sealed: a few percent at most for values of this size.
    assert!(
        encrypted_bytes as f64 <= 1.1 * plain_bytes as f64,
        "{}",
        lines.join("\n")
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionaries_go_sealed_with_an_encrypted_backup() {
    let adjust = |config: &mut Config| {
        config.dictionary_min_values = 200;
        config.train_while_writing = false;
        config.cache_capacity_bytes = 0;
    };
    let harness = Harness::sqlite_with(adjust).await;
    let store = &harness.store;
    for i in 0..600u64 {
        let value = json!({"name": format!("shooter_{i}"), "level": i % 40, "theme": "dark",
                           "stats": {"games": i % 300, "wins": i % 120}});
        store
            .store("players", &format!("{i:05}"), &value)
            .await
            .unwrap();
    }
    store.train_dictionaries().await.unwrap();
    let repository = new_encrypted(&harness).await;
    repository.backup(store, |_| {}).await.unwrap();
    let files = files_under(&repository.dir().join("dictionaries"));
    assert_eq!(files.len(), 1);
    // A zstd dictionary starts with its magic number; a sealed one does not.
    assert_ne!(
        std::fs::read(&files[0]).unwrap()[..4],
        [0x37, 0xa4, 0x30, 0xec]
    );
    let mut target = Config::new(harness.dir.path().join("restored.db"));
    adjust(&mut target);
    repository
        .restore(&BackupRef::Latest, &target, &RestoreOptions::all(), |_| {})
        .await
        .unwrap();
    let expected = contents(store).await;
    assert_eq!(
        restored_contents(harness.dir.path().join("restored.db").as_path()).await,
        expected
    );
    harness.finish().await;
}
