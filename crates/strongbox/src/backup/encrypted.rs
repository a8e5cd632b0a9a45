//! Creating and opening encrypted repositories: [`Repository::create_encrypted`] and
//! [`Repository::open_with_key`].
//!
//! An encrypted repository is a repository of format version 3: the layout and rules of
//! version 2, every object sealed and every content-derived name keyed (see [`super::crypt`]
//! and the Encryption section of `docs/backup-format.md`). Its format file's `encryption`
//! member holds the master key wrapped under the user's key ([`super::key`]).
//!
//! **Invariant:** a [`Repository`] value of an encrypted repository always holds its keys,
//! so no code path can write a plain object into it; opening one without a key, with the
//! wrong key, or a plain one with a key, is `Error::RepositoryKey` before anything is read
//! but the format file.

use std::path::PathBuf;
use std::sync::Arc;

use super::files::blocking;
use super::key::{Encryption, RepositoryKey};
use super::repository::Repository;
use crate::error::{Error, KeyProblem, Result};

impl Repository {
    /// A handle without keys.
    pub(super) fn plain(dir: PathBuf) -> Self {
        Repository {
            dir,
            lock_wait: super::lock::LockWait::default(),
            crypt: None,
            chunk_index: super::chunk_index::ChunkIndexCache::default(),
        }
    }

    /// Whether the directory holds a format file: it is a repository, or was made one
    /// (possibly by another process) since the caller looked.
    pub(super) fn is_created(&self) -> bool {
        std::fs::symlink_metadata(self.dir.join(super::repository::FORMAT_FILE)).is_ok()
    }

    /// The key error for this repository.
    pub(super) fn key_error(&self, problem: KeyProblem) -> Error {
        Error::RepositoryKey {
            repository: self.dir.display().to_string(),
            problem,
        }
    }

    /// Checks the format file of a repository opened without a key.
    ///
    /// # Errors
    /// As [`Repository::check_format`], and `Error::RepositoryKey` when it is encrypted.
    pub(super) fn require_plain(&self) -> Result<()> {
        match self.check_format()? {
            None => Ok(()),
            Some(_) => Err(self.key_error(KeyProblem::Missing)),
        }
    }

    /// Whether the repository is encrypted (opened with [`Repository::open_with_key`] or
    /// made by [`Repository::create_encrypted`]).
    pub fn is_encrypted(&self) -> bool {
        self.crypt.is_some()
    }

    /// Creates an encrypted repository in `dir`, which must not exist or be empty: a new
    /// random master key, wrapped under `key` (a passphrase goes through Argon2id, 64 MiB and
    /// 3 passes, which takes a fraction of a second). Every later open needs the same key.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when `dir` holds a repository or anything else, `Error::Io`
    /// when it cannot be created.
    ///
    /// # Cancel safety
    /// Cancel safe: the repository exists once its format file does, which is written last;
    /// an interrupted creation leaves an unfinished directory that the next creation reuses.
    pub async fn create_encrypted(dir: impl Into<PathBuf>, key: &RepositoryKey) -> Result<Self> {
        let plain = Repository::plain(dir.into());
        let key = key.clone();
        let crypt = blocking(move || {
            if plain.check_format().is_ok() {
                return Err(Error::InvalidConfig(format!(
                    "{} is a backup repository already; open it (Repository::open_with_key for \
                     an encrypted one) or choose a new directory",
                    plain.dir().display()
                )));
            }
            let (encryption, crypt) = Encryption::create(&key)?;
            plain.create_if_new(Some(encryption))?;
            // What was written is read back with the key, as every later open will.
            plain
                .check_format()?
                .ok_or_else(|| plain.key_error(KeyProblem::NotEncrypted))?;
            Ok((plain, crypt))
        })
        .await?;
        let (plain, crypt) = crypt;
        Ok(Repository {
            crypt: Some(Arc::new(crypt)),
            // What the handle without keys cached (nothing it could read) is not this one's.
            chunk_index: super::chunk_index::ChunkIndexCache::default(),
            ..plain
        })
    }

    /// Opens the existing encrypted repository in `dir` with its passphrase or key file.
    ///
    /// # Errors
    /// `Error::RepositoryKey` when `key` does not open it ([`KeyProblem::Wrong`]), is of the
    /// other kind ([`KeyProblem::OtherKind`]) or the repository is not encrypted
    /// ([`KeyProblem::NotEncrypted`]: open it with [`Repository::open`]);
    /// `Error::InvalidConfig` when `dir` is not a repository or has a newer format,
    /// `Error::Io` when it cannot be read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn open_with_key(dir: impl Into<PathBuf>, key: &RepositoryKey) -> Result<Self> {
        let plain = Repository::plain(dir.into());
        let key = key.clone();
        blocking(move || {
            let encryption = plain
                .check_format()?
                .ok_or_else(|| plain.key_error(KeyProblem::NotEncrypted))?;
            let crypt = encryption.open(&key, plain.dir())?;
            Ok(Repository {
                crypt: Some(Arc::new(crypt)),
                ..plain
            })
        })
        .await
    }
}
