//! `strongbox backup create|list|verify|restore|prune|ls|diff|dump|check|follow|copy`: backups
//! in a repository directory. Reading a backup (`ls`, `diff`, `dump`, `check`) is in
//! [`super::backup_browse`], prune and its retention flags in [`super::backup_prune`], `follow`
//! and `copy` in [`super::backup_follow`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use strongbox::Config;
use strongbox::backup::{Access, BackupRef, Damage, IfExists, Progress, RestoreOptions};

use crate::cli::GlobalOptions;
use crate::commands::Failure;
use crate::commands::backup_browse::{self, CheckArgs, DiffArgs, DumpArgs, LsArgs};
use crate::commands::backup_follow::{self, CopyArgs, FollowArgs};
use crate::commands::backup_open::open_repository;
use crate::commands::backup_prune::{self, PruneArgs};
use crate::location::{Location, LocationParser};
use crate::output::{self, Output};
use crate::progress;

/// The file that makes a directory a backup repository (see docs/backup-format.md).
pub(crate) const FORMAT_FILE: &str = "strongbox-backup.json";

/// `strongbox backup` and its subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// What to do with the repository.
    #[command(subcommand)]
    pub action: BackupAction,
}

/// The repository options every backup subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoOption {
    /// The repository: a directory, or `s3://BUCKET/PREFIX` on S3-compatible storage
    /// (credentials and endpoint from `AWS_*` variables; worked on through a mirror under
    /// --cache-dir) [default: $STRONGBOX_REPO, else `backup_repository` of --config].
    #[arg(long, env = "STRONGBOX_REPO", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub repo: Option<PathBuf>,
    /// Where an `s3://` repository is mirrored [default: `backup_cache_dir` of --config,
    /// else $XDG_CACHE_HOME/strongbox, else ~/.cache/strongbox].
    #[arg(long, env = "STRONGBOX_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON object (an array for `list`; one object a line for `ls` and `diff`)
    /// instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the repository lock when another process holds it (a prune, or
    /// backups while pruning), with a notice on standard error, before giving up (exit code 6).
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// The key of an encrypted repository.
    #[command(flatten)]
    pub key: crate::commands::backup_key::KeyOptions,
}

/// The backup subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BackupAction {
    /// Take an online backup of the database (only new values are written).
    Create {
        /// Repository and output options.
        #[command(flatten)]
        repo: RepoOption,
    },
    /// List the backups in the repository, oldest first.
    List {
        /// Repository and output options.
        #[command(flatten)]
        repo: RepoOption,
    },
    /// Re-read backups (all, or one) and prove them restorable; exit code 4 on damage.
    Verify {
        /// Repository and output options.
        #[command(flatten)]
        repo: RepoOption,
        /// The backup to check [default: all].
        id: Option<String>,
    },
    /// Restore a backup (an id, or `latest`) into a new database.
    Restore {
        /// Repository and output options.
        #[command(flatten)]
        repo: RepoOption,
        /// The backup: an id from `backup list`, or `latest` (or give --at).
        #[arg(required_unless_present = "at", conflicts_with = "at")]
        id: Option<String>,
        /// Restore the newest backup taken at or before this instant (point in time; RFC 3339,
        /// `2026-12-02T15:04:05Z`, UTC): with `backup follow` running, the state committed
        /// at most its interval before it.
        #[arg(long, value_name = "TIME", value_parser = parse_instant)]
        at: Option<i64>,
        /// The new database: a file path or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL", value_parser = LocationParser)]
        to: Location,
        /// Restore only this collection (repeatable) [default: all]; with --key, the
        /// collection of the keys (then exactly one).
        #[arg(long = "collection", value_name = "COLLECTION")]
        collections: Vec<String>,
        /// Restore only this key of the --collection (repeatable): the other records are
        /// left out. A key the backup lacks is an error, and nothing is restored.
        #[arg(long = "key", value_name = "KEY", requires = "collections")]
        keys: Vec<String>,
        /// Replace the target file if it exists (never while a store has it open).
        #[arg(long)]
        force: bool,
    },
    /// Delete the backups retention does not keep, and the values only they needed (or,
    /// with --dry-run, only say what would go).
    Prune(PruneArgs),
    /// List the records of a backup (an id, or `latest`) without restoring it.
    Ls(LsArgs),
    /// Show the records that differ between two backups: added (+), removed (-), changed (M).
    Diff(DiffArgs),
    /// Print one value of a backup as JSON, verified (exit code 3 when the key is absent).
    Dump(DumpArgs),
    /// Check the repository's structure without reading every pack; with --read-data or
    /// --read-data-subset, read and re-hash the values too (exit code 4 on damage).
    Check(CheckArgs),
    /// Continuous backup: ship the database's committed changes into the repository every
    /// --interval, as small whole backups, until interrupted.
    Follow(FollowArgs),
    /// Copy the repository's backups that another lacks to it: a directory, or
    /// `s3://BUCKET/PREFIX` on S3-compatible storage.
    Copy(CopyArgs),
}

/// `--at TIME`: an RFC 3339 instant, as milliseconds since the Unix epoch.
fn parse_instant(text: &str) -> Result<i64, String> {
    let instant = humantime::parse_rfc3339_weak(text).map_err(|error| {
        format!("{error}: give an RFC 3339 time such as 2026-12-02T15:04:05Z (UTC)")
    })?;
    let since = instant
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "give a time after 1970".to_owned())?;
    i64::try_from(since.as_millis()).map_err(|_| "that time is too far away".to_owned())
}

/// Runs a backup subcommand.
///
/// # Errors
/// The library's errors, with the action that failed; [`Failure::Problems`] when verify finds
/// damage.
pub async fn run(global: &GlobalOptions, args: BackupArgs) -> anyhow::Result<()> {
    let config = crate::config::load(global)?;
    match args.action {
        BackupAction::Create { repo } => create(&repo, config).await,
        BackupAction::List { repo } => list(&repo, &config).await,
        BackupAction::Verify { repo, id } => verify(&repo, &config, id).await,
        BackupAction::Restore {
            repo,
            id,
            at,
            to,
            collections,
            keys,
            force,
        } => {
            let options = restore_options(collections, keys, force)?;
            let backup = match (at, id) {
                (Some(at), _) => BackupRef::At(at),
                (None, Some(id)) => id.parse().context("parse the backup id")?,
                (None, None) => anyhow::bail!("name the backup to restore, or give --at TIME"),
            };
            restore(&repo, &config, &backup, &to, &options).await
        }
        BackupAction::Prune(args) => backup_prune::prune(&args, &config).await,
        BackupAction::Ls(args) => backup_browse::ls(&args, &config).await,
        BackupAction::Diff(args) => backup_browse::diff(&args, &config).await,
        BackupAction::Dump(args) => backup_browse::dump(&args, &config).await,
        BackupAction::Check(args) => backup_browse::check(&args, &config).await,
        BackupAction::Follow(args) => backup_follow::follow(&args, config).await,
        BackupAction::Copy(args) => backup_follow::copy(&args, &config).await,
    }
}

/// `backup create`: an online backup of the database into the repository (created if needed).
async fn create(repo: &RepoOption, config: Config) -> anyhow::Result<()> {
    let mut opened = open_repository(repo, &config, Access::Write).await?;
    let mut config = crate::config::for_reading(config);
    config.create_if_missing = false;
    let store = crate::commands::open_config(config).await?;
    let bar = progress::counter("backing up", 0);
    let progress = bar.clone();
    let result = opened
        .repository
        .backup(&store, move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let result = opened.finish(result.context("take a backup")).await;
    let result = result.and_then(|summary| {
        print(repo, &summary, |out| {
            out.line(format_args!(
                "backup {}: {} records, {} of {} values new ({} written) in {} ms",
                summary.id,
                output::count(summary.records),
                output::count(summary.blobs_written),
                output::count(summary.blobs_total),
                output::bytes(summary.bytes_written),
                summary.elapsed_ms
            ))
        })
    });
    crate::commands::close(store, result).await
}

/// `backup list`: one line per backup, oldest first, with its damage if any.
async fn list(repo: &RepoOption, config: &Config) -> anyhow::Result<()> {
    let mut opened = open_repository(repo, config, Access::Read).await?;
    let backups = opened.repository.list().await.context("list backups");
    let backups = opened.finish(backups).await?;
    print(repo, &backups, |out| {
        for backup in &backups {
            let base = match &backup.base {
                Some(base) => format!("  (changes since {base})"),
                None => String::new(),
            };
            out.line(format_args!(
                "{}  {}  {:>10} records  {:>10}  {}{base}",
                backup.id,
                output::time(backup.created_at_ms),
                output::count(backup.records),
                output::bytes(backup.logical_bytes),
                backup.damage.as_deref().unwrap_or("ok")
            ))?;
        }
        Ok(())
    })
}

/// `backup verify [ID]`: re-reads the backups and prints each damage and a summary.
async fn verify(repo: &RepoOption, config: &Config, id: Option<String>) -> anyhow::Result<()> {
    let id = id
        .map(|id| id.parse())
        .transpose()
        .context("parse the backup id")?;
    let mut opened = open_repository(repo, config, Access::Read).await?;
    let bar = progress::counter("verifying", 0);
    let progress = bar.clone();
    let report = opened
        .repository
        .verify(id.as_ref(), move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let report = opened.finish(report.context("verify backups")).await?;
    print(repo, &report, |out| {
        show_damage(out, &report.damage)?;
        out.line(format_args!(
            "verify: {} backups, {} values ({}) checked, {} problems",
            report.backups_checked,
            output::count(report.blobs_checked),
            output::bytes(report.bytes_checked),
            report.damage.len()
        ))
    })?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Problems {
            count: report.damage.len(),
        }
        .into())
    }
}

/// `backup restore ID --to PATH|URL`: restores a backup into a new database.
async fn restore(
    repo: &RepoOption,
    config: &Config,
    backup: &BackupRef,
    to: &Location,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let mut opened = open_repository(repo, config, Access::Read).await?;
    let mut target = config.clone();
    to.apply_to(&mut target);
    target.backup_repository = None;
    let bar = progress::counter("restoring", 0);
    let progress = bar.clone();
    let summary = opened
        .repository
        .restore(backup, &target, options, move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let summary = summary
        .map_err(target_exists)
        .with_context(|| format!("restore into {to}"));
    let summary = opened.finish(summary).await?;
    print(repo, &summary, |out| {
        out.line(format_args!(
            "restored backup {} into {}: {} records in {} ms, verified",
            summary.backup_id,
            summary.target,
            output::count(summary.records),
            summary.elapsed_ms
        ))
    })
}

/// What `backup restore` restores: every record, whole collections, or with `--key` the
/// keys named in the one `--collection` given.
fn restore_options(
    collections: Vec<String>,
    keys: Vec<String>,
    force: bool,
) -> anyhow::Result<RestoreOptions> {
    let if_exists = if force {
        IfExists::Replace
    } else {
        IfExists::Refuse
    };
    if keys.is_empty() {
        return Ok(RestoreOptions {
            collections,
            ..RestoreOptions::all()
        }
        .if_exists(if_exists));
    }
    let [collection] = collections.as_slice() else {
        anyhow::bail!(
            "--key names keys of one collection: give exactly one --collection with --key \
             (restore other collections in another restore)"
        );
    };
    Ok(keys
        .into_iter()
        .fold(RestoreOptions::all(), |options, key| {
            options.key(collection.clone(), key)
        })
        .if_exists(if_exists))
}

/// Prints `value` as indented JSON with `--json`, else as `text` writes it.
pub(crate) fn print<T: Serialize>(
    repo: &RepoOption,
    value: &T,
    text: impl FnOnce(&mut Output) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    if repo.json {
        out.json(value)?;
    } else {
        text(&mut out)?;
    }
    out.finish()
}

/// The library's refusal of an existing target, told with the flag that replaces it.
fn target_exists(error: strongbox::Error) -> anyhow::Error {
    match error {
        strongbox::Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            anyhow::anyhow!(
                "it exists; restore into a new file, or pass --force to replace it (once no \
                 program has it open)"
            )
        }
        other => other.into(),
    }
}

/// A directory that is not (yet) a repository, told with the command that makes one; other
/// errors name the repository.
pub(super) fn not_a_repository(error: strongbox::Error, dir: &Path) -> anyhow::Error {
    let shown = dir.display();
    let is_missing = !dir.join(FORMAT_FILE).exists();
    match error {
        strongbox::Error::InvalidConfig(_) if is_missing => anyhow::anyhow!(
            "{shown} is not a backup repository (it has no {FORMAT_FILE}); `strongbox backup \
             create --repo {shown}` makes one with a first backup"
        ),
        other => anyhow::Error::from(other).context(format!("open backup repository {shown}")),
    }
}

/// One line per damage found by `verify` or `check`: backup, blob (or manifest), record, what.
pub(crate) fn show_damage(out: &mut Output, damage: &[Damage]) -> anyhow::Result<()> {
    for damage in damage {
        let place = match (&damage.collection, &damage.key) {
            (Some(collection), Some(key)) => format!(" ({collection}/{key})"),
            _ => String::new(),
        };
        out.line(format_args!(
            "{}: {}{place}: {}",
            damage.backup_id,
            damage.blob_id.as_deref().unwrap_or("manifest"),
            damage.detail
        ))?;
    }
    Ok(())
}

/// Shows a library progress report on a bar.
pub(crate) fn show(bar: &ProgressBar, progress: Progress) {
    bar.set_message(progress.stage.name());
    bar.set_length(progress.total);
    bar.set_position(progress.done);
}
