//! `strongbox backup create|list|verify|restore|prune`: backups in a repository directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use strongbox::Config;
use strongbox::backup::{BackupRef, IfExists, Progress, Repository, RestoreOptions, Retention};

use crate::cli::GlobalOptions;
use crate::commands::Failure;
use crate::location::{Location, LocationParser};
use crate::output::{self, Output};
use crate::progress;

/// The file that makes a directory a backup repository (see docs/backup-format.md).
const FORMAT_FILE: &str = "strongbox-backup.json";

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
    /// The repository directory [default: `backup_repository` of --config].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Print one JSON object (an array for `list`) instead of text.
    #[arg(long)]
    pub json: bool,
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
        /// The backup: an id from `backup list`, or `latest`.
        id: String,
        /// The new database: a file path or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL", value_parser = LocationParser)]
        to: Location,
        /// Restore only this collection (repeatable) [default: all].
        #[arg(long = "collection", value_name = "COLLECTION")]
        collections: Vec<String>,
        /// Replace the target file if it exists (never while a store has it open).
        #[arg(long)]
        force: bool,
    },
    /// Delete the backups retention does not keep, and the values only they needed.
    Prune {
        /// Repository and output options.
        #[command(flatten)]
        repo: RepoOption,
        /// Keep the newest N backups, at least 1 [default: `backup_retention` of --config].
        #[arg(long, value_name = "N", value_parser = parse_keep)]
        keep: Option<usize>,
    },
}

/// `--keep N`: a count of at least 1 (a usage error otherwise, exit code 2).
fn parse_keep(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("keep at least 1 backup (to delete them all, remove the directory)".into()),
        Ok(count) => Ok(count),
        Err(error) => Err(format!("not a count of backups: {error}")),
    }
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
            to,
            collections,
            force,
        } => {
            let options = RestoreOptions {
                collections,
                if_exists: if force {
                    IfExists::Replace
                } else {
                    IfExists::Refuse
                },
            };
            restore(&repo, &config, &id, &to, &options).await
        }
        BackupAction::Prune { repo, keep } => prune(&repo, &config, keep).await,
    }
}

/// `backup create`: an online backup of the database into the repository (created if needed).
async fn create(repo: &RepoOption, config: Config) -> anyhow::Result<()> {
    let repository = open_repository(repo, &config, true).await?;
    let mut config = crate::config::for_reading(config);
    config.create_if_missing = false;
    let store = crate::commands::open_config(config).await?;
    let bar = progress::counter("backing up", 0);
    let progress = bar.clone();
    let result = repository.backup(&store, move |p| show(&progress, p)).await;
    bar.finish_and_clear();
    let result = result.context("take a backup").and_then(|summary| {
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
    let repository = open_repository(repo, config, false).await?;
    let backups = repository.list().await.context("list backups")?;
    print(repo, &backups, |out| {
        for backup in &backups {
            out.line(format_args!(
                "{}  {}  {:>10} records  {:>10}  {}",
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
    let repository = open_repository(repo, config, false).await?;
    let id = id
        .map(|id| id.parse())
        .transpose()
        .context("parse the backup id")?;
    let bar = progress::counter("verifying", 0);
    let progress = bar.clone();
    let report = repository
        .verify(id.as_ref(), move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let report = report.context("verify backups")?;
    print(repo, &report, |out| {
        for damage in &report.damage {
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
    id: &str,
    to: &Location,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let repository = open_repository(repo, config, false).await?;
    let backup: BackupRef = id.parse().context("parse the backup id")?;
    let mut target = config.clone();
    to.apply_to(&mut target);
    target.backup_repository = None;
    let bar = progress::counter("restoring", 0);
    let progress = bar.clone();
    let summary = repository
        .restore(&backup, &target, options, move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let summary = summary
        .map_err(target_exists)
        .with_context(|| format!("restore into {to}"))?;
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

/// `backup prune [--keep N]`: deletes the backups retention does not keep.
async fn prune(repo: &RepoOption, config: &Config, keep: Option<usize>) -> anyhow::Result<()> {
    let repository = open_repository(repo, config, false).await?;
    let retention = keep.map_or(config.backup_retention, Retention::last);
    let report = repository
        .prune(&retention)
        .await
        .context("prune backups")?;
    print(repo, &report, |out| {
        out.line(format_args!(
            "pruned {} backups, kept {}; removed {} values ({}); deleted {} packs, repacked {}, \
             freed {}",
            report.removed.len(),
            report.kept.len(),
            output::count(report.blobs_removed),
            output::bytes(report.bytes_removed),
            output::count(report.packs_removed),
            output::count(report.packs_repacked),
            output::bytes(report.pack_bytes_freed)
        ))?;
        if let Some(reason) = &report.sweep_skipped {
            out.line(format_args!("values kept: {reason}"))?;
        }
        Ok(())
    })
}

/// Prints `value` as indented JSON with `--json`, else as `text` writes it.
fn print<T: Serialize>(
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

/// The repository of `--repo`, else of the config file.
async fn open_repository(
    repo: &RepoOption,
    config: &Config,
    create: bool,
) -> anyhow::Result<Repository> {
    let dir = repo
        .repo
        .clone()
        .or_else(|| config.backup_repository.clone())
        .context("name the backup repository with --repo DIR (or backup_repository in --config)")?;
    crate::commands::backup_key::open(&dir, &repo.key, create).await
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

fn show(bar: &ProgressBar, progress: Progress) {
    bar.set_message(progress.stage.name());
    bar.set_length(progress.total);
    bar.set_position(progress.done);
}
