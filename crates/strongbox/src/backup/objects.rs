//! A repository's files as named objects, wherever they are: a local directory, or (with the
//! `s3` feature) an S3-compatible object store through the `object_store` crate. `copy` moves
//! repositories between them with these four operations: list, get, put, and the name rule.
//!
//! **Invariants:** only names of the repository layout are ever listed, read or written
//! ([`is_repository_name`]), so a hostile listing cannot make a write land outside the
//! repository; local reads and writes use the trust-nothing primitives of `backup::files`
//! (no link followed, every read bounded, every write synced before it is renamed into
//! place); a remote put is atomic (S3 shows an object whole or not at all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::files::{blocking, create_dir, io_error, read_dir, read_regular, sync_dir};
use super::id::BackupId;
use crate::error::{Error, Result};

/// The most bytes one object of a repository may have (packs are about 4 MiB; one value may
/// make a pack larger).
pub(crate) const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// The file that makes a directory (or a prefix) a repository.
pub(crate) const FORMAT_NAME: &str = "strongbox-backup.json";

/// Where a repository's objects are.
#[derive(Debug, Clone)]
pub(crate) enum Objects {
    /// A directory on this machine.
    Local(PathBuf),
    /// A bucket and prefix of an object store.
    #[cfg(feature = "s3")]
    Remote(super::remote::Remote),
}

impl Objects {
    /// The objects at `location`: an `s3://bucket/prefix` URL or a directory path.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for an `s3://` URL when Strongbox was built without the `s3`
    /// feature, or a URL the object store refuses.
    pub(crate) fn parse(location: &str) -> Result<Self> {
        if location.starts_with("s3://") {
            #[cfg(feature = "s3")]
            return super::remote::Remote::parse(location).map(Objects::Remote);
            #[cfg(not(feature = "s3"))]
            return Err(Error::InvalidConfig(format!(
                "{location}: this build of Strongbox has no S3 support (build strongbox-store \
                 with the `s3` feature)"
            )));
        }
        if location.is_empty() {
            return Err(Error::InvalidConfig(
                "a repository location cannot be empty".into(),
            ));
        }
        Ok(Objects::Local(PathBuf::from(location)))
    }

    /// The location as the user would write it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Objects::Local(dir) => dir.display().to_string(),
            #[cfg(feature = "s3")]
            Objects::Remote(remote) => remote.describe(),
        }
    }

    /// Every object of the repository layout, by name, with its size. Anything else found
    /// there (temporary files, the lock, foreign objects) is left out.
    ///
    /// # Errors
    /// `Error::Io` when the location cannot be listed, `Error::Corrupt` when a directory of
    /// the layout is not a real directory.
    pub(crate) async fn list(&self) -> Result<BTreeMap<String, u64>> {
        match self {
            Objects::Local(dir) => {
                let dir = dir.clone();
                blocking(move || list_local(&dir)).await
            }
            #[cfg(feature = "s3")]
            Objects::Remote(remote) => remote.list().await,
        }
    }

    /// The bytes of the object `name`, at most [`MAX_OBJECT_BYTES`].
    ///
    /// # Errors
    /// `Error::Io` when it cannot be read (or is not a regular file), `Error::Corrupt` for a
    /// name outside the layout.
    pub(crate) async fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        match self {
            Objects::Local(dir) => {
                let path = dir.join(name);
                blocking(move || {
                    read_regular(&path, MAX_OBJECT_BYTES)
                        .map_err(io_error(format!("read {}", path.display())))
                })
                .await
            }
            #[cfg(feature = "s3")]
            Objects::Remote(remote) => remote.get(name).await,
        }
    }

    /// Stores `bytes` as the object `name`, durably: locally written under `tmp/`, synced,
    /// renamed into place and its directory synced.
    ///
    /// # Errors
    /// `Error::Io` or `Error::StorageFull` when it cannot be written, `Error::Corrupt` for a
    /// name outside the layout.
    pub(crate) async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        check_name(name)?;
        match self {
            Objects::Local(dir) => {
                let (dir, name) = (dir.clone(), name.to_owned());
                blocking(move || put_local(&dir, &name, &bytes)).await
            }
            #[cfg(feature = "s3")]
            Objects::Remote(remote) => remote.put(name, bytes).await,
        }
    }
}

/// Whether `name` is a file of the repository layout (`docs/backup-format.md`): the format
/// file, a pack `packs/<xx>/<64 hex>` in the shard of its first two digits, an index
/// `index/<64 hex>`, a dictionary `dictionaries/<8 hex>` or a manifest
/// `manifests/<backup id>.jsonl.zst`.
pub(crate) fn is_repository_name(name: &str) -> bool {
    let hex = |text: &str, digits: usize| {
        text.len() == digits
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [FORMAT_NAME] => true,
        ["packs", shard, pack] => hex(shard, 2) && hex(pack, 64) && pack.starts_with(shard),
        ["index", index] => hex(index, 64),
        ["dictionaries", dictionary] => hex(dictionary, 8),
        ["manifests", manifest] => manifest
            .strip_suffix(".jsonl.zst")
            .is_some_and(|id| BackupId::parse(id).is_ok()),
        _ => false,
    }
}

/// The order files are copied in: what others name before what names them (packs and
/// dictionaries, then indexes, then manifests); deletions go the other way.
pub(crate) fn rank(name: &str) -> u8 {
    if name.starts_with("manifests/") {
        2
    } else if name.starts_with("index/") {
        1
    } else {
        0
    }
}

/// `Error::Corrupt` for a name outside the layout.
fn check_name(name: &str) -> Result<()> {
    if is_repository_name(name) {
        return Ok(());
    }
    Err(Error::Corrupt {
        collection: None,
        key: None,
        detail: format!("{name:?} is not the name of a backup repository's file"),
    })
}

/// The layout's files under `dir` (none when it does not exist).
fn list_local(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut found = BTreeMap::new();
    let mut add = |name: String, path: &Path| {
        if is_repository_name(&name)
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.is_file()
        {
            found.insert(name, meta.len());
        }
    };
    add(FORMAT_NAME.to_owned(), &dir.join(FORMAT_NAME));
    for top in ["index", "dictionaries", "manifests"] {
        for (path, kind) in read_dir(&dir.join(top))? {
            if let (true, Some(file)) = (kind.is_file(), path.file_name()) {
                add(format!("{top}/{}", file.to_string_lossy()), &path);
            }
        }
    }
    for (shard, kind) in read_dir(&dir.join("packs"))? {
        let Some(shard_name) = shard
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
        else {
            continue;
        };
        // A shard that is not a real directory is skipped, as every reader does.
        if !kind.is_dir() {
            continue;
        }
        for (path, kind) in read_dir(&shard)? {
            if let (true, Some(file)) = (kind.is_file(), path.file_name()) {
                add(
                    format!("packs/{shard_name}/{}", file.to_string_lossy()),
                    &path,
                );
            }
        }
    }
    Ok(found)
}

/// Writes `bytes` as `dir/name` through `dir/tmp/`, synced and renamed, its directory synced.
fn put_local(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    create_dir(dir)?;
    let tmp = dir.join("tmp");
    create_dir(&tmp)?;
    let target = dir.join(name);
    let parent = target.parent().unwrap_or(dir).to_path_buf();
    // Each level below `dir` (`packs/`, then its shard) is created as a real directory.
    if let Some(top) = name.split('/').next().filter(|top| *top != name) {
        create_dir(&dir.join(top))?;
    }
    create_dir(&parent)?;
    // A name of this process and call alone: two copies into one directory never share one.
    static STAGED: AtomicU64 = AtomicU64::new(0);
    let staged = tmp.join(format!(
        "copy-{}-{}-{}",
        std::process::id(),
        STAGED.fetch_add(1, Ordering::Relaxed),
        name.replace(['/', '.'], "-")
    ));
    super::files::write_durably(&staged, bytes)?;
    std::fs::rename(&staged, &target).map_err(io_error(format!("publish {}", target.display())))?;
    sync_dir(&parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_layout_names_pass() {
        let id = "ab".to_owned() + &"0".repeat(62);
        assert!(is_repository_name(FORMAT_NAME));
        assert!(is_repository_name(&format!("packs/ab/{id}")));
        assert!(is_repository_name(&format!("index/{id}")));
        assert!(is_repository_name("dictionaries/5f1c02aa"));
        assert!(is_repository_name(
            "manifests/20261128T071500Z-3f9a2c01.jsonl.zst"
        ));
        for bad in [
            format!("packs/cd/{id}"),
            format!("packs/ab/../{id}"),
            format!("../index/{id}"),
            format!("index/{id}/x"),
            "index/AB".to_owned(),
            "lock".to_owned(),
            "tmp/x".to_owned(),
            "manifests/../../etc.jsonl.zst".to_owned(),
            "manifests/x.jsonl.zst".to_owned(),
            String::new(),
        ] {
            assert!(!is_repository_name(&bad), "{bad}");
        }
    }
}
