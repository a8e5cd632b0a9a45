//! `strongbox backup prune`: retention like restic's `forget --prune` (`--keep-last`,
//! `--keep-daily`, `--keep-weekly`, `--keep-within`), and `--dry-run`.

use std::time::Duration;

use anyhow::Context as _;
use strongbox::Config;
use strongbox::backup::{Access, PrunePlan, PruneReport, Retention};

use crate::commands::backup::{RepoOption, print};
use crate::commands::backup_open::open_repository;
use crate::output::{self, Output};
use crate::progress;

/// `backup prune` options. With no `--keep-*` flag, the `backup_retention` of --config
/// applies; with any, exactly the rules given (the others off). A backup kept by any rule is
/// kept, and the newest is always kept.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Repository and output options.
    #[command(flatten)]
    pub repo: RepoOption,
    /// Keep the newest N backups, at least 1 (`--keep N` is the same).
    #[arg(long, visible_alias = "keep", value_name = "N", value_parser = parse_keep)]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the newest N days that have backups (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the newest N weeks that have backups (from Monday).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep every backup taken within DURATION before the newest one (`7d`, `36h`, `2w`).
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within: Option<Duration>,
    /// Only print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `--keep-last N`: a count of at least 1 (a usage error otherwise, exit code 2).
fn parse_keep(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("keep at least 1 backup (to delete them all, remove the directory)".into()),
        Ok(count) => Ok(count),
        Err(error) => Err(format!("not a count of backups: {error}")),
    }
}

/// `--keep-within DURATION`: a humantime duration of at least a second.
fn parse_within(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("not a duration such as 7d, 36h or 2w: {error}"))?;
    if duration.as_secs() == 0 {
        return Err("keep backups within at least 1s of the newest".into());
    }
    Ok(duration)
}

impl PruneArgs {
    /// The retention the flags give, else `fallback`.
    fn retention(&self, fallback: Retention) -> Retention {
        let flags = [
            self.keep_last.is_some(),
            self.keep_daily.is_some(),
            self.keep_weekly.is_some(),
            self.keep_within.is_some(),
        ];
        if !flags.contains(&true) {
            return fallback;
        }
        Retention {
            keep_last: self.keep_last.unwrap_or(0),
            keep_daily: self.keep_daily.unwrap_or(0),
            keep_weekly: self.keep_weekly.unwrap_or(0),
            keep_within_secs: self.keep_within.map_or(0, |within| within.as_secs()),
        }
    }
}

/// `backup prune`: deletes the backups retention does not keep, or with `--dry-run` prints
/// what it would delete.
pub async fn prune(args: &PruneArgs, config: &Config) -> anyhow::Result<()> {
    let retention = args.retention(config.backup_retention);
    let access = if args.dry_run {
        Access::Read
    } else {
        Access::Prune
    };
    let mut opened = open_repository(&args.repo, config, access).await?;
    if args.dry_run {
        let plan = progress::while_running(
            "planning the prune",
            opened.repository.plan_prune(&retention),
        )
        .await
        .context("plan a prune");
        let plan = opened.finish(plan).await?;
        return print(&args.repo, &plan, |out| show_plan(out, &plan));
    }
    let report = progress::while_running("pruning", opened.repository.prune(&retention))
        .await
        .context("prune backups");
    let report = opened.finish(report).await?;
    print(&args.repo, &report, |out| show_report(out, &report))
}

fn show_report(out: &mut Output, report: &PruneReport) -> anyhow::Result<()> {
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
}

fn show_plan(out: &mut Output, plan: &PrunePlan) -> anyhow::Result<()> {
    for id in &plan.kept {
        out.line(format_args!("keep    {id}"))?;
    }
    for id in &plan.removed {
        out.line(format_args!("remove  {id}"))?;
    }
    for id in &plan.unreadable {
        out.line(format_args!("leave   {id} (unreadable)"))?;
    }
    out.line(format_args!(
        "dry run: would remove {} backups and keep {}; would remove {} values ({}); nothing \
         was deleted",
        plan.removed.len(),
        plan.kept.len(),
        output::count(plan.blobs_removed),
        output::bytes(plan.bytes_removed)
    ))?;
    if let Some(reason) = &plan.sweep_skipped {
        out.line(format_args!("values would be kept: {reason}"))?;
    }
    Ok(())
}
