//! `strongbox verify`: check every stored value against its hash, and every reference.

use anyhow::Context as _;
use serde_json::json;
use strongbox::{Problem, Store, VerifyReport};

use crate::cli::GlobalOptions;
use crate::commands::{Access, Failure};
use crate::output::{self, Output};
use crate::progress;

/// Options of `strongbox verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Print the report as a JSON object: is_clean, blobs_checked, records_checked, problems.
    #[arg(long)]
    pub json: bool,
}

/// Runs `Store::verify` (under a spinner on a terminal), prints each problem and a summary line.
///
/// # Errors
/// [`Failure::Problems`] (exit code 4) when anything is wrong; a busy database when the checks
/// cannot run.
pub async fn run(global: &GlobalOptions, args: VerifyArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = verify(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn verify(store: &Store, args: &VerifyArgs) -> anyhow::Result<()> {
    let report = progress::while_running("verifying every value and record", store.verify())
        .await
        .context("verify the database")?;
    let mut out = Output::stdout();
    if args.json {
        out.json(&json!({
            "is_clean": report.is_clean(),
            "blobs_checked": report.blobs_checked,
            "records_checked": report.records_checked,
            "problems": report.problems,
        }))?;
    } else {
        for problem in &report.problems {
            out.line(describe(problem))?;
        }
        out.line(summary(&report))?;
    }
    out.finish()?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Problems {
            count: report.problems.len(),
        }
        .into())
    }
}

/// `collection/key: detail`, or `(store): detail` for a problem with no record.
pub fn describe(problem: &Problem) -> String {
    match (&problem.collection, &problem.key) {
        (Some(collection), Some(key)) => format!("{collection}/{key}: {}", problem.detail),
        (Some(collection), None) => format!("{collection}: {}", problem.detail),
        _ => format!("(store): {}", problem.detail),
    }
}

/// `verify: 1,234 values checked, no problems` (or the number of problems).
pub fn summary(report: &VerifyReport) -> String {
    let found = match report.problems.len() {
        0 => "no problems".to_owned(),
        1 => "1 problem".to_owned(),
        n => format!("{} problems", output::count(n as u64)),
    };
    let values = if report.blobs_checked == 1 {
        "value"
    } else {
        "values"
    };
    format!(
        "verify: {} unique {values} checked, {found}",
        output::count(report.blobs_checked)
    )
}
