//! `strongbox maintenance`: optimize, vacuum, checkpoint, check and sweep, with a report.

use anyhow::Context as _;
use strongbox::{MaintenanceOptions, MaintenanceReport};

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::output::{self, Output};
use crate::progress;

/// Options of `strongbox maintenance`.
#[derive(Debug, Clone, clap::Args)]
pub struct MaintenanceArgs {
    /// Rebuild the whole file (VACUUM; holds writes back while it runs) and analyze everything.
    #[arg(long)]
    pub full: bool,
    /// Also rebuild every index.
    #[arg(long)]
    pub reindex: bool,
    /// Print the report as one JSON object (steps, file_bytes_before, bytes_reclaimed,
    /// elapsed_ms...).
    #[arg(long)]
    pub json: bool,
}

/// Runs `Store::maintenance_with` (under a spinner on a terminal) and prints its report; exits
/// non-zero when a step failed.
///
/// # Errors
/// When the database cannot be opened, or a step failed (after printing the report).
pub async fn run(global: &GlobalOptions, args: MaintenanceArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Write).await?;
    let options = MaintenanceOptions {
        is_full: args.full,
        reindex: args.reindex,
    };
    let result = async {
        let step = "maintenance: optimizing, vacuuming, checking integrity, sweeping";
        let report = progress::while_running(step, store.maintenance_with(options))
            .await
            .context("run maintenance")?;
        print(&report, args.json)?;
        anyhow::ensure!(
            report.errors.is_empty(),
            "maintenance had {} failed steps",
            report.errors.len()
        );
        Ok(())
    }
    .await;
    crate::commands::close(store, result).await
}

fn print(report: &MaintenanceReport, json: bool) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    if json {
        out.json(report)?;
        return out.finish();
    }
    for step in &report.steps {
        let mark = if step.is_ok { "ok    " } else { "FAILED" };
        out.line(format_args!(
            "{mark} {:<18} {:>7} ms  {}",
            step.name, step.elapsed_ms, step.outcome
        ))?;
    }
    out.line(format_args!(
        "file {} -> {} ({} reclaimed); {} released and {} orphan blobs removed; {} ms in all",
        output::bytes(report.file_bytes_before),
        output::bytes(report.file_bytes_after),
        output::bytes(report.bytes_reclaimed),
        output::count(report.released_blobs_removed),
        output::count(report.orphan_blobs_removed),
        report.elapsed_ms
    ))?;
    out.finish()
}
