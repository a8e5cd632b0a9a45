//! `strongbox backup create|list|verify|restore|prune`: backups in a repository directory.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strongbox::backup::{BackupRef, IfExists, Progress, Repository, RestoreOptions, Retention};
use strongbox::{Config, PostgresUrl};

use crate::cli::GlobalOptions;
use crate::commands::Failure;
use crate::output::{self, Output};

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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
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
        #[arg(long, value_name = "PATH|URL")]
        to: String,
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
        /// Keep the newest N backups [default: `backup_retention` of --config].
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
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
            restore(&repo, &config, &id, to, &options).await
        }
        BackupAction::Prune { repo, keep } => prune(&repo, &config, keep).await,
    }
}

/// `backup create`: an online backup of the database into the repository (created if needed).
async fn create(repo: &RepoOption, config: Config) -> anyhow::Result<()> {
    let repository = open_repository(repo, &config, true).await?;
    let mut config = config;
    config.create_if_missing = false;
    let store = crate::commands::open_config(config).await?;
    let bar = progress_bar("backing up");
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
                "{}  {:>10} records  {:>10}  {}",
                backup.id,
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
    let bar = progress_bar("verifying");
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
    to: String,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let repository = open_repository(repo, config, false).await?;
    let backup: BackupRef = id.parse().context("parse the backup id")?;
    let mut target = config.clone();
    if PostgresUrl::is_postgres(&to) {
        target.postgres_url = Some(PostgresUrl::new(to));
    } else {
        target.postgres_url = None;
        target.path = PathBuf::from(to);
    }
    target.backup_repository = None;
    let bar = progress_bar("restoring");
    let progress = bar.clone();
    let summary = repository
        .restore(&backup, &target, options, move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("restore into {}", target.location()))?;
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
            "pruned {} backups, kept {}; removed {} values ({})",
            report.removed.len(),
            report.kept.len(),
            output::count(report.blobs_removed),
            output::bytes(report.bytes_removed)
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
        out.json(value, true)?;
    } else {
        text(&mut out)?;
    }
    out.finish()
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
    let opened = if create {
        Repository::open_or_create(&dir).await
    } else {
        Repository::open(&dir).await
    };
    opened.with_context(|| format!("open backup repository {}", dir.display()))
}

/// A progress bar on standard error when it is a terminal, hidden otherwise.
fn progress_bar(label: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{prefix} {msg} [{bar:30}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label);
    bar
}

fn show(bar: &ProgressBar, progress: Progress) {
    bar.set_message(progress.stage.name());
    bar.set_length(progress.total);
    bar.set_position(progress.done);
}
