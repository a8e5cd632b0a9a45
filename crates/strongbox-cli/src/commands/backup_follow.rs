//! `strongbox backup follow` (continuous backup: the feed's changes shipped every few
//! seconds) and `strongbox backup copy` (a repository copied to another directory or to
//! `s3://bucket/prefix`).

use std::time::Duration;

use anyhow::Context as _;
use strongbox::Config;
use strongbox::backup::{self, Access, FollowStep};

use crate::commands::backup::{RepoOption, print, show};
use crate::commands::backup_open::open_repository;
use crate::output::{self, Output};
use crate::progress;

/// `backup follow` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Repository and output options (with --json, one object a line per backup written).
    #[command(flatten)]
    pub repo: RepoOption,
    /// Time between two steps: at most about this long of acknowledged writes is outside
    /// the repository.
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = parse_interval)]
    pub interval: Duration,
    /// Take one step (a full backup when the repository has none of this database) and exit.
    #[arg(long)]
    pub once: bool,
}

/// `backup copy` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyArgs {
    /// The repository copied from (and output options).
    #[command(flatten)]
    pub repo: RepoOption,
    /// Where to: a directory, or `s3://BUCKET/PREFIX` (credentials and endpoint from the
    /// `AWS_*` variables). Created when it does not exist.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub to: String,
}

/// `--interval`: a duration from 100 ms to a day.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(86_400) {
        return Err("give an interval from 100ms to 1day".into());
    }
    Ok(interval)
}

/// `backup follow`: ships the database's changes into the repository every `--interval`
/// until interrupted (Ctrl-C ends it between two steps, or stops the step in flight, which
/// then publishes nothing).
///
/// # Errors
/// The library's: a store with the change feed off, a repository that cannot be written.
pub async fn follow(args: &FollowArgs, config: Config) -> anyhow::Result<()> {
    let mut opened = open_repository(&args.repo, &config, Access::Write).await?;
    let mut config = crate::config::for_reading(config);
    config.create_if_missing = false;
    let store = crate::commands::open_config(config).await?;
    let mut follower = opened.repository.follower(&store);
    let result = async {
        loop {
            opened.resume().await?;
            if opened.is_offsite() {
                // The mirror was brought up to date: another machine may have pruned.
                follower = opened.repository.follower(&store);
            }
            let step = tokio::select! {
                step = follower.step() => step.context("ship changes to the repository"),
                _ = tokio::signal::ctrl_c() => return opened.abandon().await,
            };
            let step = opened.finish(step).await?;
            // A step that found nothing new is told only when it is the only one.
            if step.backup.is_some() || args.once {
                report(&args.repo, &step)?;
            }
            if args.once {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(args.interval) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    .await;
    crate::commands::close(store, result).await
}

/// The line of one step.
fn report(repo: &RepoOption, step: &FollowStep) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    match (&step.backup, repo.json) {
        (_, true) => out.json(step)?,
        (None, false) => out.line(format_args!(
            "nothing changed since the last backup (feed position {})",
            step.feed_seq
        ))?,
        (Some(backup), false) => out.line(format_args!(
            "backup {}: {} ({} records, {} written, feed position {})",
            backup.id,
            if step.is_full {
                "a full snapshot".to_owned()
            } else {
                format!("{} changes", output::count(step.changes))
            },
            output::count(backup.records),
            output::bytes(backup.bytes_written),
            step.feed_seq
        ))?,
    }
    out.finish()
}

/// `backup copy --to DEST`: copies what DEST lacks of the repository.
///
/// # Errors
/// The library's: a source that is not a repository, a destination holding another one,
/// damage at the source, a destination that cannot be written.
pub async fn copy(args: &CopyArgs, config: &Config) -> anyhow::Result<()> {
    let from = args
        .repo
        .repo
        .clone()
        .or_else(|| config.backup_repository.clone())
        .context(
            "name the repository to copy with --repo DIR (or $STRONGBOX_REPO, or \
             backup_repository in --config)",
        )?;
    let from = from.to_string_lossy().into_owned();
    let bar = progress::counter("copying", 0);
    let progress = bar.clone();
    let notice = |notice: &backup::LockNotice| eprintln!("strongbox: {notice}");
    let timeout = args.repo.lock_timeout;
    let report = backup::copy_with_lock_timeout(&from, &args.to, timeout, notice, move |p| {
        show(&progress, p)
    })
    .await;
    bar.finish_and_clear();
    let report = report.with_context(|| format!("copy {from} to {}", args.to))?;
    print(&args.repo, &report, |out| {
        out.line(format_args!(
            "copied {} files ({}) with {} backups to {}; {} files were there already",
            output::count(report.objects_copied),
            output::bytes(report.bytes_copied),
            output::count(report.backups_copied),
            report.to,
            output::count(report.objects_present)
        ))
    })
}
