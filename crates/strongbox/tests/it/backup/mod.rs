//! Backups and restore: online and point-in-time under concurrent transfers, incremental,
//! verified, pruned by retention, and refusing bad input with nothing half-written.

mod damage;
mod fuzz;
mod hostile;
mod leftovers;
mod online;
mod restore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use strongbox::backup::{BackupRef, Repository, RestoreOptions, RestoreSummary};
use strongbox::blob::BlobId;
use strongbox::{Config, ListOptions, Store};

use crate::common::Harness;

/// Every record of a store: value and version, by (collection, key).
pub type Contents = BTreeMap<(String, String), (Value, u64)>;

pub async fn contents(store: &Store) -> Contents {
    let mut all = Contents::new();
    for collection in store.collections().await.unwrap() {
        for key in store.list(&collection, ListOptions::all()).await.unwrap() {
            let record = store
                .retrieve_record::<Value>(&collection, &key)
                .await
                .unwrap()
                .unwrap();
            all.insert(
                (collection.clone(), key),
                (record.value, record.meta.version.get()),
            );
        }
    }
    all
}

/// A value of about 1.5 KB, different for every `seed`.
pub fn value(seed: u64) -> Value {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let words: Vec<String> = (0..150)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{:x}", state % 100_000)
        })
        .collect();
    json!({ "seed": seed, "notes": words.join(" ") })
}

/// Stores `players/p0` .. `players/p{count - 1}`, each with [`value`] of its number.
pub async fn store_players(store: &Store, count: u64) {
    for i in 0..count {
        store
            .store("players", &format!("p{i}"), &value(i))
            .await
            .unwrap();
    }
}

pub fn blob_of(value: &Value) -> BlobId {
    BlobId::of(&serde_json::to_vec(value).unwrap())
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub async fn restore(
    repository: &Repository,
    which: &BackupRef,
    path: &Path,
    options: RestoreOptions,
) -> strongbox::Result<RestoreSummary> {
    repository
        .restore(which, &Config::new(path), &options, |_| {})
        .await
}

/// Opens a restored file, reads all of it, and closes it after checking it.
pub async fn restored_contents(path: &Path) -> Contents {
    let store = Store::open(Config::new(path)).await.unwrap();
    let all = contents(&store).await;
    assert!(store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
    all
}

pub async fn new_repository(harness: &Harness) -> Repository {
    Repository::open_or_create(harness.dir.path().join("repository"))
        .await
        .unwrap()
}
