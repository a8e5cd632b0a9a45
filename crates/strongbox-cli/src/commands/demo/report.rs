//! What the demo prints: one line or a few per phase, in the order the phases run, each
//! flushed at once so that the night can be followed as it goes.

use std::time::Duration;

use strongbox::{MaintenanceReport, StorageStats, VerifyReport};

use super::checks::ReadBack;
use super::tally::Tally;
use crate::commands::verify;
use crate::output::{self, Output};

/// The setup phase: records written and how long it took.
///
/// # Errors
/// When standard output is closed or full (so are the others).
pub fn setup(out: &mut Output, setup: &Tally, elapsed: Duration) -> anyhow::Result<()> {
    out.line(format_args!(
        "setup       {} records (profiles, balances, settings, avatars, achievements) in {:.2} s",
        output::count(setup.writes),
        elapsed.as_secs_f64()
    ))?;
    out.flush()
}

/// The game night: what the tables did, how the bets went and how many transactions ran again.
pub fn night(
    out: &mut Output,
    tables: usize,
    night: &Tally,
    elapsed: Duration,
) -> anyhow::Result<()> {
    out.line(format_args!(
        "game night  {tables} tables playing concurrently for {:.2} s: {} bets, {} dice rolls, \
         {} chat messages, {} tips",
        elapsed.as_secs_f64(),
        output::count(night.bets),
        output::count(night.rolls),
        output::count(night.chats),
        output::count(night.tips),
    ))?;
    out.line(format_args!(
        "            bets: {} won, {} lost, {} pushed; {} transactions met a concurrent update \
         and ran again",
        output::count(night.won),
        output::count(night.lost),
        output::count(night.pushed),
        output::count(night.retries),
    ))?;
    out.flush()
}

/// The deliberate conflict's lines.
pub fn conflict(out: &mut Output, lines: Vec<String>) -> anyhow::Result<()> {
    for line in lines {
        out.line(line)?;
    }
    out.flush()
}

/// What reading everything back found.
pub fn read_back(out: &mut Output, read: &ReadBack, elapsed: Duration) -> anyhow::Result<()> {
    out.line(format_args!(
        "read back   {} records in {} collections in {:.2} s; {} of them checked equal to the \
         value last written (balances are checked by their total)",
        output::count(read.records),
        read.collections,
        elapsed.as_secs_f64(),
        output::count(read.checked),
    ))?;
    out.flush()
}

/// The total of chips, then and now, and whether the invariant holds.
pub fn chips(out: &mut Output, initial_chips: i64, read: &ReadBack) -> anyhow::Result<()> {
    out.line(format_args!(
        "chips       total {} at the start, {} now, {} bets left open: invariant {}",
        output::count(initial_chips.unsigned_abs()),
        output::count(read.chips.unsigned_abs()),
        read.open_bets,
        if read.chips_hold(initial_chips) {
            "holds"
        } else {
            "BROKEN"
        }
    ))?;
    out.flush()
}

/// What compression and deduplication saved.
pub fn storage(out: &mut Output, stats: &StorageStats) -> anyhow::Result<()> {
    out.line(format_args!(
        "storage     {} of values written as {} ({} of logical); file {}",
        output::bytes(stats.logical_bytes),
        output::bytes(stats.stored_bytes),
        output::percent(stats.stored_bytes, stats.logical_bytes),
        output::bytes(stats.file_bytes),
    ))?;
    out.line(format_args!(
        "            saved by deduplication: {} ({} of logical; {} records share {} unique values)",
        output::bytes(stats.dedup_saved_bytes),
        output::percent(stats.dedup_saved_bytes, stats.logical_bytes),
        output::count(stats.records),
        output::count(stats.blobs),
    ))?;
    out.line(format_args!(
        "            saved by compression:   {} ({} of the unique values)",
        output::bytes(stats.compression_saved_bytes),
        output::percent(stats.compression_saved_bytes, stats.unique_bytes),
    ))?;
    out.flush()
}

/// The maintenance run: dictionaries trained, values recompressed, the file before and after.
pub fn maintenance(
    out: &mut Output,
    maintenance: &MaintenanceReport,
    after: &StorageStats,
) -> anyhow::Result<()> {
    out.line(format_args!(
        "maintenance {} dictionaries trained, {} values recompressed: values stored in {} ({} of \
         logical); file {} -> {}, in {} ms",
        maintenance.dictionaries_trained,
        output::count(maintenance.values_recompressed),
        output::bytes(after.stored_bytes),
        output::percent(after.stored_bytes, after.logical_bytes),
        output::bytes(maintenance.file_bytes_before),
        output::bytes(maintenance.file_bytes_after),
        maintenance.elapsed_ms
    ))?;
    for error in &maintenance.errors {
        out.line(format_args!("            maintenance step failed: {error}"))?;
    }
    out.flush()
}

/// Verify's problems, if any, and its summary.
pub fn verify(out: &mut Output, report: &VerifyReport) -> anyhow::Result<()> {
    for problem in &report.problems {
        out.line(format_args!("            {}", verify::describe(problem)))?;
    }
    out.line(format_args!(
        "{}",
        verify::summary(report).replacen("verify: ", "verify      ", 1)
    ))
}

/// Records written and read, and the write rate over the workload's time.
pub fn total(
    out: &mut Output,
    writes: u64,
    records_read: u64,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let elapsed = elapsed.as_secs_f64();
    out.line(format_args!(
        "total       {} records written, {} read, in {elapsed:.2} s ({} writes/s)",
        output::count(writes),
        output::count(records_read),
        output::count((writes as f64 / elapsed.max(1e-9)).round() as u64),
    ))?;
    out.flush()
}
