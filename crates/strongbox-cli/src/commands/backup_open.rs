//! Opening the repository of `--repo` for a backup subcommand: a directory as it is, or an
//! `s3://BUCKET/PREFIX` through a session on its local mirror (`strongbox::backup::Offsite`)
//! that the command ends with [`Opened::finish`], uploading what it wrote.

use std::path::PathBuf;

use anyhow::Context as _;
use strongbox::Config;
use strongbox::backup::{Access, Offsite, OffsiteSession, Repository};

use crate::commands::backup::{RepoOption, show};
use crate::progress;

/// A repository opened for a command.
pub(crate) struct Opened {
    /// The repository: the directory, or the mirror of the offsite one.
    pub repository: Repository,
    /// The offsite repository and what the command does to it.
    offsite: Option<(Offsite, Access)>,
    /// The session in progress, while one is.
    session: Option<OffsiteSession>,
}

/// The repository of `--repo` (or `$STRONGBOX_REPO`), else of the config file (with its key
/// file or password file, when no key option is given); waiting for its lock at most
/// `--lock-timeout`, with a notice on standard error when it has to wait. An `s3://` one is
/// brought into its mirror under `--cache-dir` first, with a progress bar.
///
/// # Errors
/// No repository named, a directory or URL that is not a repository (unless `access` is
/// [`Access::Write`], which creates one), a wrong key, a lock held past the timeout.
pub(crate) async fn open_repository(
    repo: &RepoOption,
    config: &Config,
    access: Access,
) -> anyhow::Result<Opened> {
    let location = repo
        .repo
        .clone()
        .or_else(|| config.backup_repository.clone())
        .context(
            "name the backup repository with --repo DIR (or $STRONGBOX_REPO, or \
             backup_repository in --config)",
        )?;
    let mut key = repo.key.clone();
    // The config file's repository comes with the config file's key, unless one is given.
    if repo.repo.is_none() && key.key_file.is_none() && key.password_file.is_none() {
        key.key_file = config.backup_repository_key_file.clone();
        key.password_file = config.backup_repository_password_file.clone();
        key.encrypt |= key.key_file.is_some() || key.password_file.is_some();
    }
    let create = access == Access::Write;
    let notice = |notice: &strongbox::backup::LockNotice| eprintln!("strongbox: {notice}");
    let url = location.to_str().filter(|text| text.starts_with("s3://"));
    let Some(url) = url else {
        let repository = crate::commands::backup_key::open(&location, &key, create).await?;
        return Ok(Opened {
            repository: repository
                .with_lock_timeout(repo.lock_timeout)
                .with_lock_notice(notice),
            offsite: None,
            session: None,
        });
    };
    let offsite = Offsite::new(url, cache_dir(repo, config)?)?
        .with_lock_timeout(repo.lock_timeout)
        .with_lock_notice(notice);
    let session = start(&offsite, access).await?;
    let dir = session.dir();
    if !create && !dir.join(crate::commands::backup::FORMAT_FILE).exists() {
        let _ = session.close().await;
        anyhow::bail!(
            "{url} is not a backup repository (it has no {}); `strongbox backup create --repo \
             {url}` makes one with a first backup",
            crate::commands::backup::FORMAT_FILE
        );
    }
    match crate::commands::backup_key::open(&dir, &key, create).await {
        Ok(repository) => Ok(Opened {
            repository: repository
                .with_lock_timeout(repo.lock_timeout)
                .with_lock_notice(notice),
            offsite: Some((offsite, access)),
            session: Some(session),
        }),
        Err(error) => {
            let _ = session.close().await;
            Err(error.context(format!("open backup repository {url}")))
        }
    }
}

/// `--cache-dir`, else `backup_cache_dir` of --config, else `$XDG_CACHE_HOME/strongbox`, else
/// `~/.cache/strongbox`.
fn cache_dir(repo: &RepoOption, config: &Config) -> anyhow::Result<PathBuf> {
    repo.cache_dir
        .clone()
        .or_else(|| config.backup_cache_dir.clone())
        .or_else(Offsite::default_cache_dir)
        .context("an s3:// repository is mirrored in a cache directory: give --cache-dir DIR")
}

/// Opens a session on the offsite repository, with a progress bar while it downloads.
async fn start(offsite: &Offsite, access: Access) -> anyhow::Result<OffsiteSession> {
    let bar = progress::counter("downloading", 0);
    let progress = bar.clone();
    let session = offsite.open(access, move |p| show(&progress, p)).await;
    bar.finish_and_clear();
    session.with_context(|| format!("open backup repository {}", offsite.url()))
}

impl Opened {
    /// Ends the command's work on an offsite repository: when `result` is a success, uploads
    /// what it wrote (a prune's deletions too), then gives the session up. A directory
    /// repository has nothing to do.
    ///
    /// # Errors
    /// `result`'s error, else the upload's.
    pub(crate) async fn finish<T>(&mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let Some(session) = self.session.take() else {
            return result;
        };
        let published = match &result {
            Ok(_) => {
                let bar = progress::counter("uploading", 0);
                let progress = bar.clone();
                let published = session.publish(move |p| show(&progress, p)).await;
                bar.finish_and_clear();
                published.map(|_| ())
            }
            Err(_) => Ok(()),
        };
        let url = self.offsite.as_ref().map(|(offsite, _)| offsite.url());
        let url = url.unwrap_or_default();
        if let Err(error) = session.close().await {
            eprintln!("strongbox: could not give up the lock of {url} (it expires): {error}");
        }
        let value = result?;
        published.with_context(|| format!("upload to {url}"))?;
        Ok(value)
    }

    /// Gives an offsite session up without uploading anything (an interrupted step).
    ///
    /// # Errors
    /// None: a lock that cannot be given up is told on standard error (it expires).
    pub(crate) async fn abandon(&mut self) -> anyhow::Result<()> {
        if let Some(session) = self.session.take()
            && let Err(error) = session.close().await
        {
            eprintln!("strongbox: could not give up a repository lock (it expires): {error}");
        }
        Ok(())
    }

    /// Whether the repository is an offsite one, worked on through its mirror.
    pub(crate) fn is_offsite(&self) -> bool {
        self.offsite.is_some()
    }

    /// Starts the next session on an offsite repository after [`Opened::finish`] (`backup
    /// follow`'s next step); a directory repository has nothing to do.
    ///
    /// # Errors
    /// As [`open_repository`].
    pub(crate) async fn resume(&mut self) -> anyhow::Result<()> {
        if let (Some((offsite, access)), None) = (&self.offsite, &self.session) {
            self.session = Some(start(offsite, *access).await?);
        }
        Ok(())
    }
}
