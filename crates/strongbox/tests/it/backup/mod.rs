//! Backups and restore: online and point-in-time under concurrent transfers, incremental,
//! verified, pruned by retention, and refusing bad input with nothing half-written.

mod browse;
mod configured;
mod copy;
mod damage;
mod differential;
mod encrypted;
mod follow;
mod fuzz;
mod hostile;
mod leftovers;
#[cfg(feature = "s3")]
mod offsite;
mod online;
mod packs;
mod restore;
mod sizes;

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

/// Restores `which` (everything) into a new file `name` under `dir`, and returns what the
/// restored file holds ([`restored_contents`]).
pub async fn restored(
    repository: &Repository,
    which: &BackupRef,
    dir: &Path,
    name: impl AsRef<Path>,
) -> Contents {
    let target = dir.join(name);
    restore(repository, which, &target, RestoreOptions::all())
        .await
        .unwrap();
    restored_contents(&target).await
}

/// Restores the newest backup into `dir/name` and checks it equals the store now.
pub async fn restores_equal(repository: &Repository, store: &Store, dir: &Path, name: &str) {
    let target = dir.join(name);
    restore(
        repository,
        &BackupRef::Latest,
        &target,
        RestoreOptions::all(),
    )
    .await
    .unwrap();
    assert_eq!(restored_contents(&target).await, contents(store).await);
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

/// Every index file's contents, decoded.
pub fn indexes(repository: &Repository) -> Vec<Value> {
    files_under(&repository.dir().join("index"))
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            serde_json::from_slice(&zstd::decode_all(bytes.as_slice()).unwrap()).unwrap()
        })
        .collect()
}

/// The ids (hex) of the blobs the repository's indexes name.
pub fn indexed_blobs(repository: &Repository) -> std::collections::BTreeSet<String> {
    indexes(repository)
        .iter()
        .flat_map(|index| index["packs"].as_array().unwrap().clone())
        .flat_map(|pack| pack["blobs"].as_array().unwrap().clone())
        .map(|blob| blob[0].as_str().unwrap().to_owned())
        .collect()
}

/// Where a value's blob is: its pack file, offset and length, from the index.
pub fn locate(repository: &Repository, value: &Value) -> (PathBuf, u64, u64) {
    let hex = blob_of(value).to_hex();
    for index in indexes(repository) {
        for pack in index["packs"].as_array().unwrap() {
            for blob in pack["blobs"].as_array().unwrap() {
                if blob[0] == hex.as_str() {
                    let pack = pack["id"].as_str().unwrap();
                    let path = repository.dir().join("packs").join(&pack[..2]).join(pack);
                    return (path, blob[1].as_u64().unwrap(), blob[2].as_u64().unwrap());
                }
            }
        }
    }
    panic!("no index names blob {hex}")
}

/// Bytes of the pack files.
pub fn pack_bytes(repository: &Repository) -> u64 {
    files_under(&repository.dir().join("packs"))
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

/// The bucket of the S3-compatible server `.ci/run` starts (`STRONGBOX_TEST_S3_BUCKET`, with
/// the `AWS_*` variables pointing at it); `None` skips the test, unless
/// `STRONGBOX_REQUIRE_S3` is set.
#[cfg(feature = "s3")]
pub fn s3_bucket() -> Option<String> {
    match std::env::var("STRONGBOX_TEST_S3_BUCKET") {
        Ok(bucket) if !bucket.is_empty() => Some(bucket),
        _ => {
            assert!(
                std::env::var_os("STRONGBOX_REQUIRE_S3").is_none(),
                "STRONGBOX_REQUIRE_S3 is set but no S3 server is configured \
                 (STRONGBOX_TEST_S3_BUCKET; .ci/run starts one)"
            );
            eprintln!("skipped: no S3-compatible server (STRONGBOX_TEST_S3_BUCKET is not set)");
            None
        }
    }
}
