//! The repository a store's configuration names: `backup_repository` (a directory, or an
//! `s3://` URL worked on through a session on its mirror, `backup::offsite`), opened with
//! `backup_repository_key_file` or `backup_repository_password_file` when it is encrypted. The
//! store's scheduled backups, its `follow` task and its backup-age gauge all open it here.
//!
//! **Invariants:** a configured key means an encrypted repository: one that does not exist yet
//! is created encrypted under it, and a plain one is refused (`Error::RepositoryKey`), never
//! written to in the clear. Unlocking (Argon2id for a passphrase: 64 MiB and about a second
//! of CPU) happens once per store: the unlocked repository is kept and reused, and dropped
//! again after any error, so that a changed key file is read again.

use std::path::PathBuf;
use std::sync::Arc;

use super::key::RepositoryKey;
use super::repository::Repository;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

/// The key the configuration gives for its repository, if any.
///
/// # Errors
/// As [`RepositoryKey::from_file`] and [`RepositoryKey::from_password_file`].
pub(crate) fn configured_key(config: &Config) -> Result<Option<RepositoryKey>> {
    if let Some(path) = &config.backup_repository_key_file {
        return RepositoryKey::from_file(path).map(Some);
    }
    config
        .backup_repository_password_file
        .as_ref()
        .map(RepositoryKey::from_password_file)
        .transpose()
}

/// What a piece of the store's own backup work does to the configured repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Reads it.
    Read,
    /// Adds backups (created when it does not exist yet).
    Write,
    /// Adds backups and prunes.
    Prune,
}

/// The configured repository, opened for one piece of work: a directory, or the mirror of an
/// `s3://` one in a session that [`Configured::finish`] publishes and ends.
#[derive(Debug)]
pub(crate) struct Configured {
    /// The repository to work on.
    pub(crate) repository: Repository,
    #[cfg(feature = "s3")]
    session: Option<super::offsite::OffsiteSession>,
}

/// Opens the store's configured repository for `work`; unless it only reads, creates it when
/// it does not exist yet (encrypted under the configured key, if there is one).
///
/// # Errors
/// `Error::InvalidConfig` when no repository is configured, when it is not a repository yet
/// and `work` only reads, or when it is an `s3://` URL and the `s3` feature is off; the
/// errors of opening it (`Error::RepositoryKey` for a wrong key) and, for an `s3://` one, of
/// its session ([`super::Offsite::open`]).
pub(crate) async fn configured(store: &Store, work: Work) -> Result<Configured> {
    let location = location(store.config())?;
    if let Some(url) = s3_url(&location) {
        return open_offsite(store, url, work).await;
    }
    Ok(Configured {
        repository: open_dir(store, location, work != Work::Read).await?,
        #[cfg(feature = "s3")]
        session: None,
    })
}

/// When the newest backup of the configured repository was taken (for the backup-age gauge):
/// for an `s3://` one, from the names of its manifests, without a session.
///
/// # Errors
/// As [`configured`] for [`Work::Read`], and as [`Repository::newest_backup_ms`].
pub(crate) async fn configured_newest_ms(store: &Store) -> Result<Option<i64>> {
    let location = location(store.config())?;
    match s3_url(&location) {
        #[cfg(feature = "s3")]
        Some(url) => offsite(store.config(), url)?.newest_backup_ms().await,
        #[cfg(not(feature = "s3"))]
        Some(url) => Err(no_s3(url)),
        None => {
            open_dir(store, location, false)
                .await?
                .newest_backup_ms()
                .await
        }
    }
}

/// Whether the store's configured repository is an `s3://` one.
pub(crate) fn configured_is_offsite(config: &Config) -> bool {
    location(config).is_ok_and(|location| s3_url(&location).is_some())
}

impl Configured {
    /// Whether the repository is the mirror of an `s3://` one.
    pub(crate) fn is_offsite(&self) -> bool {
        #[cfg(feature = "s3")]
        let offsite = self.session.is_some();
        #[cfg(not(feature = "s3"))]
        let offsite = false;
        offsite
    }

    /// Ends the work: on an `s3://` repository, uploads what the work wrote into the mirror
    /// (a partial work too: every local operation leaves the mirror a valid repository at
    /// any point), then gives the session up.
    ///
    /// # Errors
    /// The upload's ([`super::OffsiteSession::publish`]).
    pub(crate) async fn finish(self) -> Result<()> {
        #[cfg(feature = "s3")]
        if let Some(session) = self.session {
            let published = session.publish(|_| {}).await;
            if let Err(error) = session.close().await {
                tracing::warn!(%error, "could not give up a backup repository's lock (it expires)");
            }
            published?;
        }
        Ok(())
    }
}

/// `backup_repository`.
fn location(config: &Config) -> Result<PathBuf> {
    config
        .backup_repository
        .clone()
        .ok_or_else(|| Error::InvalidConfig("no backup_repository is configured".into()))
}

/// The URL, when `location` is an `s3://` one.
fn s3_url(location: &std::path::Path) -> Option<&str> {
    location.to_str().filter(|text| text.starts_with("s3://"))
}

/// A session on the `s3://` repository, and its mirror opened as [`open_dir`] opens one.
#[cfg(feature = "s3")]
async fn open_offsite(store: &Store, url: &str, work: Work) -> Result<Configured> {
    use super::offsite::Access;
    let access = match work {
        Work::Read => Access::Read,
        Work::Write => Access::Write,
        Work::Prune => Access::Prune,
    };
    let session = offsite(store.config(), url)?.open(access, |_| {}).await?;
    match open_dir(store, session.dir(), work != Work::Read).await {
        Ok(repository) => Ok(Configured {
            repository,
            session: Some(session),
        }),
        Err(error) => {
            let _ = session.close().await;
            Err(error)
        }
    }
}

#[cfg(not(feature = "s3"))]
async fn open_offsite(_: &Store, url: &str, _: Work) -> Result<Configured> {
    Err(no_s3(url))
}

#[cfg(not(feature = "s3"))]
fn no_s3(url: &str) -> Error {
    Error::InvalidConfig(format!(
        "backup_repository {url}: this build of Strongbox has no S3 support (build \
         strongbox-store with the `s3` feature)"
    ))
}

/// The configured `s3://` repository and its mirror's cache directory.
#[cfg(feature = "s3")]
fn offsite(config: &Config, url: &str) -> Result<super::offsite::Offsite> {
    let cache = config
        .backup_cache_dir
        .clone()
        .or_else(super::offsite::Offsite::default_cache_dir)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "backup_repository {url} is worked on through a mirror in a cache directory: \
                 set backup_cache_dir (there is no $XDG_CACHE_HOME nor $HOME)"
            ))
        })?;
    // A store's own work never waits long for another machine's: it fails, and the next run
    // (or step) tries again.
    Ok(super::offsite::Offsite::new(url, cache)?
        .with_lock_timeout(STORE_LOCK_TIMEOUT)
        .with_lock_notice(|notice| tracing::info!(%notice, "backup repository locked")))
}

/// How long a store's own backup work waits for the lock of an `s3://` repository.
#[cfg(feature = "s3")]
const STORE_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the repository in `dir`; with `create`, creates it when it does not exist yet
/// (encrypted under the configured key, if there is one).
async fn open_dir(store: &Store, dir: PathBuf, create: bool) -> Result<Repository> {
    let config = store.config();
    let Some(key) = configured_key(config)? else {
        return match create {
            true => Repository::open_or_create(dir).await,
            false => Repository::open(dir).await,
        };
    };
    if let Some(unlocked) = unlocked(store) {
        return Ok(unlocked);
    }
    let opened = unlock(dir, &key, create).await?;
    if let Ok(mut slot) = store.unlocked_repository().lock() {
        *slot = Some(Arc::new(opened.clone()));
    }
    Ok(opened)
}

/// Forgets the unlocked repository, after an error with it: the next use opens it afresh.
pub(crate) fn forget_unlocked(store: &Store) {
    if let Ok(mut slot) = store.unlocked_repository().lock() {
        *slot = None;
    }
}

/// The repository unlocked earlier, if any.
fn unlocked(store: &Store) -> Option<Repository> {
    let slot = store.unlocked_repository().lock().ok()?;
    slot.as_ref()?.downcast_ref::<Repository>().cloned()
}

/// Opens the encrypted repository in `dir`, or with `create` creates it when it is new (one
/// created meanwhile by another task or process is opened instead).
async fn unlock(dir: PathBuf, key: &RepositoryKey, create: bool) -> Result<Repository> {
    if !create || Repository::plain(dir.clone()).is_created() {
        return Repository::open_with_key(dir, key).await;
    }
    match Repository::create_encrypted(dir.clone(), key).await {
        Err(Error::InvalidConfig(_)) if Repository::plain(dir.clone()).is_created() => {
            Repository::open_with_key(dir, key).await
        }
        created => created,
    }
}
