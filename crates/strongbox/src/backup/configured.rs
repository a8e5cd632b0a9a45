//! The repository a store's configuration names: `backup_repository`, opened with
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

/// Opens the store's configured repository; with `create`, creates it when it does not exist
/// yet (encrypted under the configured key, if there is one).
///
/// # Errors
/// `Error::InvalidConfig` when no repository is configured, when it is an `s3://` URL (the
/// CLI's commands take one; a store's own backups do not), or (without `create`) when it is
/// not a repository yet; the errors of opening it (`Error::RepositoryKey` for a wrong key).
pub(crate) async fn configured(store: &Store, create: bool) -> Result<Repository> {
    let config = store.config();
    let dir = config
        .backup_repository
        .clone()
        .ok_or_else(|| Error::InvalidConfig("no backup_repository is configured".into()))?;
    if dir.to_str().is_some_and(|dir| dir.starts_with("s3://")) {
        return Err(Error::InvalidConfig(format!(
            "backup_repository {} is on object storage: a store's own backups (scheduled, \
             backup_follow_secs) go to a directory; copy it offsite with `strongbox backup copy \
             --to s3://...`, or run `strongbox backup create|follow --repo s3://...`",
            dir.display()
        )));
    }
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
