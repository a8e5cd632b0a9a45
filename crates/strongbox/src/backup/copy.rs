//! [`copy`]: copies a repository's backups to another place, a directory or (with the `s3`
//! feature) an `s3://bucket/prefix`, writing only the files the destination lacks (restic's
//! `copy`; the "one copy offsite" of the 3-2-1 rule).
//!
//! **Invariants:** a backup appears at the destination only once everything it needs is
//! there: packs and dictionaries are written first, then the indexes naming them, then the
//! manifests (in name order, so that a differential backup's base, whose id sorts before
//! its own, is there first), each object whole (a local file is synced and renamed into place, an S3 object
//! is atomic). Objects are immutable and named by their content, and a copy deletes nothing,
//! so two copies into one destination cannot harm each other; it holds both ends' locks
//! shared (a directory's `flock`, an object store's lock objects), so that no prune deletes
//! what it reads, nor what it found already there and counts on. A killed copy leaves a
//! destination whose every listed backup is whole (the next copy completes the rest). A pack
//! or index whose bytes do not hash to its name is not copied: the copy stops before any
//! manifest, naming it (in an encrypted repository names are keyed hashes, which a copy
//! without the key cannot check: `backup verify` with the key does, at either end). An
//! encrypted repository is copied as it is, sealed, with its wrapped key in its format file:
//! the destination opens with the same passphrase or key file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::files::blocking;
use super::lock::{LockNotice, LockWait};
use super::objects::{FORMAT_NAME, Objects, rank};
use super::repository::{LockMode, Repository, RepositoryLock};
use super::{Progress, Stage};
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// What [`copy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Where from and where to, as given.
    pub from: String,
    /// Where to.
    pub to: String,
    /// Files written at the destination.
    pub objects_copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Files the destination already had.
    pub objects_present: u64,
    /// Backups (manifests) written at the destination.
    pub backups_copied: u64,
}

/// Copies every file of the repository at `from` that the one at `to` lacks, backups last;
/// `to` is created when it does not exist. Each location is a directory path or an
/// `s3://bucket/prefix` URL. `progress` counts files (stage [`Stage::Copy`]).
///
/// # Errors
/// `Error::InvalidConfig` when `from` is not a repository, or `to` is another repository
/// (a different format file); `Error::Corrupt` when a pack or index at `from` does not match
/// its name (run `backup verify` there); `Error::Io` or `Error::StorageFull` when a file
/// cannot be read or written.
///
/// # Cancel safety
/// Cancel safe: every file is written whole, backups last, so a dropped copy leaves a
/// destination whose every backup is whole; copying again finishes it.
pub async fn copy(
    from: &str,
    to: &str,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<CopyReport> {
    let (source, target) = (Objects::parse(from)?, Objects::parse(to)?);
    let locking = Locking::Both(LockWait::default());
    copy_objects(&source, &target, &locking, progress).await
}

/// [`copy`], waiting at most `lock_timeout` for a prune running at either end (then
/// [`Error::LockTimeout`], having copied nothing), and telling `notice` once when it starts
/// to wait (`strongbox backup copy --lock-timeout`).
///
/// # Errors
/// As [`copy`], and `Error::LockTimeout`.
pub async fn copy_with_lock_timeout(
    from: &str,
    to: &str,
    lock_timeout: Duration,
    notice: impl Fn(&LockNotice) + Send + Sync + 'static,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<CopyReport> {
    let (source, target) = (Objects::parse(from)?, Objects::parse(to)?);
    let wait = LockWait::default()
        .with_timeout(lock_timeout)
        .with_notice(Arc::new(notice));
    copy_objects(&source, &target, &Locking::Both(wait), progress).await
}

/// Which repository locks a copy takes (shared: no prune deletes while it reads or writes),
/// waiting for them as its [`LockWait`] says.
#[derive(Debug, Clone)]
pub(crate) enum Locking {
    /// Both ends' ([`copy`]).
    Both(LockWait),
    /// The source's only: the caller holds the target's (an offsite session publishing).
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    SourceOnly(LockWait),
}

/// [`copy`] between two parsed places.
pub(crate) async fn copy_objects(
    source: &Objects,
    target: &Objects,
    locking: &Locking,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<CopyReport> {
    Ok(copy_listed(source, target, locking, progress).await?.0)
}

/// The listings a copy took: every object of the source, and of the target before the copy
/// wrote anything (names and sizes; the format file included).
#[derive(Debug)]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct Listings {
    /// The source's objects.
    pub(crate) source: BTreeMap<String, u64>,
    /// The target's objects before the copy.
    pub(crate) target_before: BTreeMap<String, u64>,
}

/// [`copy_objects`], also returning the two listings it took, so that a caller holding the
/// target's exclusive lock (a prune session publishing) can tell what the target holds now
/// without listing it again: what it held before, and the source's objects.
pub(crate) async fn copy_listed(
    source: &Objects,
    target: &Objects,
    locking: &Locking,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<(CopyReport, Listings)> {
    let (Locking::Both(wait) | Locking::SourceOnly(wait)) = locking;
    let (from, to) = (&source.describe(), &target.describe());
    let format = source.get(FORMAT_NAME).await.map_err(|error| {
        Error::InvalidConfig(format!(
            "{from} is not a Strongbox backup repository (its {FORMAT_NAME} cannot be read: \
             {error})"
        ))
    })?;
    let source_lock = lock_shared(source, wait).await?;
    let present = target.list().await?;
    match present.get(FORMAT_NAME) {
        None => target.put(FORMAT_NAME, format.clone()).await?,
        Some(_) => {
            if target.get(FORMAT_NAME).await? != format {
                return Err(Error::InvalidConfig(format!(
                    "{to} holds another repository (its {FORMAT_NAME} differs from {from}'s): \
                     copy into an empty place or a copy of the same repository"
                )));
            }
        }
    }
    let target_lock = match locking {
        Locking::Both(_) => lock_shared(target, wait).await?,
        Locking::SourceOnly(_) => Held::Nothing,
    };
    let wanted = source.list().await?;
    let (missing, already): (Vec<(&String, &u64)>, Vec<_>) = wanted
        .iter()
        .filter(|(name, _)| name.as_str() != FORMAT_NAME)
        .partition(|(name, size)| present.get(*name) != Some(size));
    let mut report = CopyReport {
        from: source.describe(),
        to: target.describe(),
        objects_present: already.len() as u64,
        ..CopyReport::default()
    };
    let total = missing.len() as u64;
    progress(Progress::new(Stage::Copy, 0, total));
    // Packs and dictionaries, then the indexes naming them, then the backups.
    let mut ordered: BTreeMap<u8, Vec<&String>> = BTreeMap::new();
    for (name, _) in &missing {
        ordered.entry(rank(name)).or_default().push(name);
    }
    // In an encrypted repository names are keyed hashes, which only the key can check.
    let is_encrypted = serde_json::from_slice::<serde_json::Value>(&format)
        .is_ok_and(|format| format.get("encryption").is_some());
    for name in ordered.into_values().flatten() {
        let bytes = source.get(name).await?;
        if !is_encrypted {
            check_content(from, name, &bytes)?;
        }
        report.bytes_copied += bytes.len() as u64;
        target.put(name, bytes).await?;
        report.objects_copied += 1;
        if name.starts_with("manifests/") {
            report.backups_copied += 1;
        }
        progress(Progress::new(Stage::Copy, report.objects_copied, total));
    }
    target_lock.release().await?;
    source_lock.release().await?;
    let listings = Listings {
        source: wanted,
        target_before: present,
    };
    Ok((report, listings))
}

/// Packs and indexes are named by the BLAKE3 hash of their bytes: a copy checks it, so that
/// damage is not carried offsite unnoticed.
fn check_content(from: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let Some(id) = name
        .strip_prefix("index/")
        .or_else(|| name.strip_prefix("packs/").and_then(|rest| rest.get(3..)))
    else {
        return Ok(());
    };
    if BlobId::of(bytes).to_hex() == id {
        return Ok(());
    }
    Err(Error::Corrupt {
        collection: None,
        key: None,
        detail: format!(
            "{name} in {from} does not hash to its name: it is damaged, and the copy stopped \
             before any backup was copied (run `backup verify` on {from})"
        ),
    })
}

/// A shared lock a copy holds on one end.
enum Held {
    /// A directory's `flock`, released when dropped.
    Local(#[allow(dead_code)] RepositoryLock),
    /// An object store's lock object (`backup::remote_lock`).
    #[cfg(feature = "s3")]
    Remote(super::remote_lock::RemoteLock),
    /// None.
    Nothing,
}

impl Held {
    /// Gives the lock up.
    async fn release(self) -> Result<()> {
        match self {
            #[cfg(feature = "s3")]
            Held::Remote(lock) => lock.release().await,
            Held::Local(_) | Held::Nothing => Ok(()),
        }
    }
}

/// The shared lock of a repository, waiting for a running prune as `wait` says (an
/// encrypted repository's lock needs no key: it is copied sealed).
async fn lock_shared(objects: &Objects, wait: &LockWait) -> Result<Held> {
    match objects {
        Objects::Local(dir) => {
            let mut repository = Repository::plain(dir.clone());
            repository.lock_wait = wait.clone();
            blocking(move || repository.lock(LockMode::Shared).map(Held::Local)).await
        }
        #[cfg(feature = "s3")]
        Objects::Remote(remote) => super::remote_lock::RemoteLock::acquire(remote, false, wait)
            .await
            .map(Held::Remote),
    }
}
