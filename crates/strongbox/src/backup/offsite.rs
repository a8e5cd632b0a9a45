//! A repository on S3-compatible object storage (`s3://bucket/prefix`), worked on through a
//! mirror in a local cache directory: every command of a directory repository works on it.
//!
//! An [`Offsite`] names the repository and the cache. [`Offsite::open`] starts a session: it
//! takes the remote lock (`backup::remote_lock`: shared to read or back up, exclusive to
//! prune) and an exclusive `flock` on the mirror (one session of this machine at a time per
//! repository), then makes the mirror equal to the repository: it deletes what the remote no
//! longer has (backups first) and downloads what it lacks (packs first, backups last; objects
//! are immutable and named by their content or a unique id, so only new ones cross the
//! network). The session's [`OffsiteSession::dir`] is then opened as any repository
//! ([`Repository::open`](super::Repository::open), or with its key), and
//! [`OffsiteSession::publish`] uploads what the command wrote, backups last, as `backup copy`
//! does; a prune session then deletes what the prune deleted (backups first, then indexes,
//! then packs: the order of a local prune, so a session killed at any point leaves every
//! listed backup whole). [`OffsiteSession::close`] gives the lock up.
//!
//! The cost: the mirror holds a whole copy of the repository (restic keeps only its indexes
//! and snapshots in its cache, reading packs on demand); the first session downloads
//! everything, later ones only what changed.
//!
//! **Invariants:** nothing is deleted from the remote but in a prune session, under the
//! exclusive lock; a backup appears on the remote only once everything it needs is there; a
//! session that is not published (a killed command) changes nothing on the remote, and the
//! next session drops its leftovers from the mirror.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::copy::{CopyReport, Locking, copy_listed};
use super::files::{blocking, create_dir, io_error};
use super::id::BackupId;
use super::lock::{LockNotice, LockWait, acquire};
use super::objects::{FORMAT_NAME, Objects, rank};
use super::remote::Remote;
use super::remote_lock::RemoteLock;
use super::repository::LockMode;
use super::{Progress, Stage};
use crate::error::{Error, Result};

/// What a session may do to the remote repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read it (list, verify, check, browse, restore): a shared lock; publishes nothing.
    Read,
    /// Add backups to it (create, follow), creating it when it does not exist: a shared lock.
    Write,
    /// Prune it (and add backups, as scheduled backups do): an exclusive lock; publishing
    /// deletes what the prune deleted.
    Prune,
}

/// A repository on object storage and the local cache that mirrors it.
#[derive(Debug, Clone)]
pub struct Offsite {
    remote: Remote,
    mirror: PathBuf,
    lock_wait: LockWait,
}

/// An open session: the remote lock held and the mirror up to date. Close it with
/// [`OffsiteSession::close`].
#[derive(Debug)]
pub struct OffsiteSession {
    offsite: Offsite,
    access: Access,
    lock: RemoteLock,
    _mirror_lock: File,
}

/// What [`OffsiteSession::publish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishReport {
    /// The objects uploaded.
    pub uploaded: CopyReport,
    /// Objects deleted from the remote (a prune session only).
    pub objects_deleted: u64,
}

impl Offsite {
    /// The repository at `url` (`s3://bucket/prefix[?endpoint=URL&region=NAME]`; credentials
    /// from the environment, see `docs/backup-format.md`), mirrored under `cache` (in a
    /// directory of its own named by a hash of the URL).
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a URL that is not an S3 repository URL.
    pub fn new(url: &str, cache: impl AsRef<Path>) -> Result<Self> {
        if !url.starts_with("s3://") {
            return Err(Error::InvalidConfig(format!(
                "{url}: an offsite repository is an s3://BUCKET/PREFIX URL"
            )));
        }
        let remote = Remote::parse(url)?;
        let hash = blake3::hash(url.as_bytes()).to_hex();
        let mirror = cache.as_ref().join(format!("s3-{}", &hash[..16]));
        Ok(Offsite {
            remote,
            mirror,
            lock_wait: LockWait::default(),
        })
    }

    /// This offsite, whose sessions wait at most `timeout` for the locks, then fail with
    /// [`Error::LockTimeout`]. By default they wait as long as it takes.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_wait = self.lock_wait.with_timeout(timeout);
        self
    }

    /// This offsite, whose sessions tell `notice` once when they find a lock held and start
    /// to wait.
    pub fn with_lock_notice(
        mut self,
        notice: impl Fn(&LockNotice) + Send + Sync + 'static,
    ) -> Self {
        self.lock_wait = self.lock_wait.with_notice(Arc::new(notice));
        self
    }

    /// The cache directory used when none is given: `$XDG_CACHE_HOME/strongbox`, else
    /// `$HOME/.cache/strongbox`; `None` when neither variable is set.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        set("XDG_CACHE_HOME")
            .map(|dir| PathBuf::from(dir).join("strongbox"))
            .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache/strongbox")))
    }

    /// When the newest backup in the repository was taken, in milliseconds since the Unix
    /// epoch, to the second (from the names of its manifests: one listing, no lock, nothing
    /// downloaded); `None` when it holds none.
    ///
    /// # Errors
    /// `Error::Io` when the server cannot be listed.
    pub async fn newest_backup_ms(&self) -> Result<Option<i64>> {
        let listed = self.remote.list().await?;
        Ok(listed
            .keys()
            .filter_map(|name| name.strip_prefix("manifests/")?.strip_suffix(".jsonl.zst"))
            .filter_map(|id| BackupId::parse(id).ok())
            .map(|id| id.time_ms())
            .max())
    }

    /// The URL, as given.
    pub fn url(&self) -> String {
        self.remote.describe()
    }

    /// Starts a session: takes the locks, then brings the mirror up to date. `progress`
    /// counts the objects downloaded (stage [`Stage::Copy`]).
    ///
    /// # Errors
    /// `Error::InvalidConfig` when a [`Access::Read`] session finds no repository at the URL
    /// (the others start from an empty mirror); `Error::LockTimeout` after the lock timeout;
    /// `Error::Io` when the server or the cache cannot be read or written (after
    /// `object_store`'s retries).
    pub async fn open(
        &self,
        access: Access,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<OffsiteSession> {
        let (base, wait) = (self.mirror.clone(), self.lock_wait.clone());
        let mirror_lock = blocking(move || {
            // The cache directory is the caller's (as `~/.cache/strongbox`, created with its
            // parents); the mirror's own directory is checked as a repository's are.
            if let Some(cache) = base.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(cache)
                    .map_err(io_error(format!("create {}", cache.display())))?;
            }
            create_dir(&base)?;
            let path = base.join("mirror.lock");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error(format!("open {}", path.display())))?;
            acquire(&file, LockMode::Exclusive, &wait, &base)?;
            Ok(file)
        })
        .await?;
        let lock =
            RemoteLock::acquire(&self.remote, access == Access::Prune, &self.lock_wait).await?;
        let session = OffsiteSession {
            offsite: self.clone(),
            access,
            lock,
            _mirror_lock: mirror_lock,
        };
        match session.download(&progress).await {
            Ok(()) => Ok(session),
            Err(error) => {
                let _ = session.close().await;
                Err(error)
            }
        }
    }
}

impl OffsiteSession {
    /// The mirror: open it as a repository directory.
    pub fn dir(&self) -> PathBuf {
        self.offsite.mirror.join("repository")
    }

    fn local(&self) -> Objects {
        Objects::Local(self.dir())
    }

    fn remote(&self) -> Objects {
        Objects::Remote(self.offsite.remote.clone())
    }

    /// Makes the mirror equal to the remote repository.
    async fn download(&self, progress: &(impl Fn(Progress) + Send + Sync)) -> Result<()> {
        let wanted = self.remote().list().await?;
        if !wanted.contains_key(FORMAT_NAME) && self.access == Access::Read {
            return Err(Error::InvalidConfig(format!(
                "{} is not a Strongbox backup repository (it has no {FORMAT_NAME}); `strongbox \
                 backup create --repo {}` makes one with a first backup",
                self.offsite.url(),
                self.offsite.url()
            )));
        }
        let (local, dir) = (self.local(), self.dir());
        let have = local.list().await?;
        let mut stale: Vec<&String> = have.keys().filter(|n| !wanted.contains_key(*n)).collect();
        stale.sort_by_key(|name| std::cmp::Reverse(rank(name)));
        for name in stale {
            let path = dir.join(name);
            blocking(move || {
                std::fs::remove_file(&path).map_err(io_error(format!("delete {}", path.display())))
            })
            .await?;
        }
        // The format file is small and may differ at the same size (a repository made anew).
        let mut missing: Vec<&String> = wanted
            .iter()
            .filter(|(name, size)| *name == FORMAT_NAME || have.get(*name) != Some(size))
            .map(|(name, _)| name)
            .collect();
        missing.sort_by_key(|name| rank(name));
        let total = missing.len() as u64;
        progress(Progress::new(Stage::Copy, 0, total));
        for (done, name) in missing.into_iter().enumerate() {
            let bytes = self.remote().get(name).await?;
            local.put(name, bytes).await?;
            progress(Progress::new(Stage::Copy, done as u64 + 1, total));
        }
        // Each download was synced into place by `Objects::put`; a deletion lost to a crash is
        // made again by the next session.
        Ok(())
    }

    /// Uploads what the session wrote into the mirror, backups last; in a prune session,
    /// then deletes from the remote what the mirror no longer has (backups first). A read
    /// session publishes nothing. `progress` counts the objects uploaded.
    ///
    /// # Errors
    /// `Error::Corrupt` when an object of the mirror does not match its name; `Error::Io`
    /// when the server cannot be written (the remote then still lists only whole backups:
    /// publish again, or run the command again).
    pub async fn publish(
        &self,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<PublishReport> {
        if self.access == Access::Read {
            return Ok(PublishReport::default());
        }
        // The session holds the remote lock already (an exclusive one would keep a copy's
        // shared lock waiting for ever).
        let locking = Locking::SourceOnly(self.offsite.lock_wait.clone());
        let (uploaded, listings) =
            copy_listed(&self.local(), &self.remote(), &locking, progress).await?;
        let mut report = PublishReport {
            uploaded,
            objects_deleted: 0,
        };
        if self.access == Access::Prune {
            // The bucket holds what it held before the upload and what was uploaded (the
            // mirror's objects): under the exclusive lock nobody else writes there, so the
            // copy's two listings tell what to delete without listing the bucket again.
            let have = &listings.source;
            let mut gone: Vec<&String> = listings
                .target_before
                .keys()
                .filter(|name| *name != FORMAT_NAME && !have.contains_key(*name))
                .collect();
            gone.sort_by_key(|name| std::cmp::Reverse(rank(name)));
            for name in gone {
                self.offsite.remote.delete(name).await?;
                report.objects_deleted += 1;
            }
        }
        Ok(report)
    }

    /// Ends the session: the remote lock is given up, then the mirror's.
    ///
    /// # Errors
    /// `Error::Io` when the lock object cannot be deleted (it goes stale by itself within
    /// minutes).
    pub async fn close(self) -> Result<()> {
        self.lock.release().await
    }
}
