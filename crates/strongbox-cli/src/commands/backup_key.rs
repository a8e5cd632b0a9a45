//! The key options of `strongbox backup`: opening an encrypted repository, and creating one
//! with `backup create --encrypt`.

use std::path::{Path, PathBuf};

use strongbox::backup::{Repository, RepositoryKey};

/// The environment variable that gives the repository passphrase.
pub const PASSWORD_ENV: &str = "STRONGBOX_REPO_PASSWORD";

/// The file that makes a directory a backup repository (see docs/backup-format.md).
const FORMAT_FILE: &str = "strongbox-backup.json";

/// How to open (or create) an encrypted repository. Without any of these, the repository is
/// opened as a plain one. The passphrase may also come from the environment variable
/// `STRONGBOX_REPO_PASSWORD`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyOptions {
    /// Read the repository passphrase from this file (its first line) [or set
    /// STRONGBOX_REPO_PASSWORD].
    #[arg(long, value_name = "PATH", conflicts_with = "key_file")]
    pub password_file: Option<PathBuf>,
    /// The repository key file: 32 bytes, or 64 hex digits (`head -c 32 /dev/urandom`).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// With `backup create` on a new repository: create it encrypted, under the passphrase or
    /// key file given.
    #[arg(long)]
    pub encrypt: bool,
}

impl KeyOptions {
    /// The key given: `--key-file`, else `--password-file`, else `STRONGBOX_REPO_PASSWORD`.
    ///
    /// # Errors
    /// When a file cannot be read or holds no key.
    pub fn key(&self) -> anyhow::Result<Option<RepositoryKey>> {
        if let Some(path) = &self.key_file {
            return Ok(Some(RepositoryKey::from_file(path)?));
        }
        if let Some(path) = &self.password_file {
            return Ok(Some(RepositoryKey::from_password_file(path)?));
        }
        match std::env::var(PASSWORD_ENV) {
            Ok(passphrase) if !passphrase.is_empty() => {
                Ok(Some(RepositoryKey::passphrase(passphrase)))
            }
            _ => Ok(None),
        }
    }
}

/// Opens the repository in `dir` with the key options; with `create`, creates it when new
/// (encrypted with `--encrypt`).
///
/// # Errors
/// The library's errors, `RepositoryKey` ones told with the options that give a key.
pub async fn open(dir: &Path, options: &KeyOptions, create: bool) -> anyhow::Result<Repository> {
    let key = options.key()?;
    let is_new = !dir.join(FORMAT_FILE).exists();
    let opened = match (key, create && is_new) {
        (Some(key), true) if options.encrypt => Repository::create_encrypted(dir, &key).await,
        (Some(_), true) => anyhow::bail!(
            "{} is not a backup repository yet: add --encrypt to create it encrypted with the \
             key given, or give no key to create a plain one",
            dir.display()
        ),
        (None, _) if options.encrypt => anyhow::bail!(
            "--encrypt needs a key: give --password-file PATH, set {PASSWORD_ENV}, or give \
             --key-file PATH"
        ),
        (Some(key), false) => Repository::open_with_key(dir, &key).await,
        (None, true) => Repository::open_or_create(dir).await,
        (None, false) => Repository::open(dir).await,
    };
    opened.map_err(|error| match error {
        strongbox::Error::RepositoryKey { .. } => anyhow::Error::from(error).context(format!(
            "open backup repository {} (give its key with --password-file PATH, \
             {PASSWORD_ENV} or --key-file PATH)",
            dir.display()
        )),
        other => super::backup::not_a_repository(other, dir),
    })
}
