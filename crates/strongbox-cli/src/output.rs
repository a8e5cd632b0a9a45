//! Printing: JSON, aligned plain tables, and human-readable numbers and times.
//!
//! Everything goes through a locked, buffered standard output and returns errors instead of
//! panicking, so that `strongbox export | head` ends quietly (see `main`).
//!
//! One style for every `--json`: one compact object (or array) per line, snake_case fields,
//! the unit at the end of a field's name (`elapsed_ms`, `logical_bytes`, `created_at_ms`),
//! times as milliseconds since the Unix epoch, booleans named `is_…`. Human output shows times
//! in RFC 3339, UTC ([`time`]).

use std::io::{self, BufWriter, StdoutLock, Write};

use anyhow::Context as _;
use serde::Serialize;
use strongbox::StorageStats;

/// A buffered handle on standard output. Call [`Output::finish`] to flush it.
pub struct Output {
    inner: BufWriter<StdoutLock<'static>>,
}

impl Output {
    /// Locks standard output.
    pub fn stdout() -> Self {
        Output {
            inner: BufWriter::new(io::stdout().lock()),
        }
    }

    /// Writes one line.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn line(&mut self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        writeln!(self.inner, "{text}").context("write to standard output")
    }

    /// Writes bytes as they are.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.inner
            .write_all(bytes)
            .context("write to standard output")
    }

    /// Writes a value as JSON on one line.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        // Serialized first, so that a write error stays an `io::Error` (see `main::exit_code`).
        let text = serde_json::to_string(value).context("serialize JSON")?;
        self.line(text)
    }

    /// Writes rows of two columns, the first padded to the widest.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn table(&mut self, rows: &[(String, String)]) -> anyhow::Result<()> {
        let width = rows
            .iter()
            .map(|(left, _)| left.chars().count())
            .max()
            .unwrap_or(0);
        for (left, right) in rows {
            self.line(format_args!("{left:<width$}  {right}"))?;
        }
        Ok(())
    }

    /// Flushes what was written so far, so that it shows before a long step.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.inner.flush().context("write to standard output")
    }

    /// Flushes what was written.
    ///
    /// # Errors
    /// When standard output is closed or full.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.inner.flush().context("write to standard output")
    }
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `38.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `part` as a percentage of `whole`, one decimal (`-` when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 time in UTC with milliseconds
/// (`2025-10-09T08:41:02.530Z`); a time outside years 1970 to 9999 as the number of ms.
pub fn time(ms_since_epoch: i64) -> String {
    /// The last millisecond of the year 9999, the last that RFC 3339 can write.
    const LAST_MS: u64 = 253_402_300_799_999;
    match u64::try_from(ms_since_epoch) {
        Ok(ms) if ms <= LAST_MS => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_millis(at).to_string()
        }
        _ => format!("{ms_since_epoch} ms since the epoch"),
    }
}

/// The `replicas` row of `stats`: standbys answering, lag, reads served and fallbacks.
pub fn replica_row(replicas: &strongbox::ReplicaStats) -> (String, String) {
    let lag = replicas
        .lag_bytes
        .map_or_else(|| "unknown".to_owned(), bytes);
    (
        "replicas".to_owned(),
        format!(
            "{} of {} standbys answering, {lag} behind; {} reads served, {} fell back to the primary",
            replicas.healthy,
            replicas.standbys,
            count(replicas.reads),
            count(replicas.fallbacks)
        ),
    )
}

/// The human form of [`StorageStats`]: what is stored, then the savings from deduplication and
/// from compression apart, then the file size.
pub fn storage_rows(stats: &StorageStats) -> Vec<(String, String)> {
    let row = |label: &str, text: String| (label.to_owned(), text);
    vec![
        row("records", count(stats.records)),
        row(
            "expiry",
            format!(
                "{} records will expire; {} expired, removed by the next sweep",
                count(stats.expiring),
                count(stats.expired)
            ),
        ),
        row("collections", count(stats.collections)),
        row("unique values", count(stats.blobs)),
        row(
            "logical size",
            format!(
                "{} (values as serialized, each record counted)",
                bytes(stats.logical_bytes)
            ),
        ),
        row(
            "deduplication",
            format!(
                "saved {} ({} of logical): {} of unique values",
                bytes(stats.dedup_saved_bytes),
                percent(stats.dedup_saved_bytes, stats.logical_bytes),
                bytes(stats.unique_bytes),
            ),
        ),
        row(
            "compression",
            format!(
                "saved {} ({} of unique values): {} stored",
                bytes(stats.compression_saved_bytes),
                percent(stats.compression_saved_bytes, stats.unique_bytes),
                bytes(stats.stored_bytes),
            ),
        ),
        row(
            "dictionaries",
            format!(
                "{} of {} collections compress with a trained zstd dictionary",
                count(stats.dictionary_collections),
                count(stats.collections)
            ),
        ),
        row(
            "stored size",
            format!(
                "{} ({} of logical)",
                bytes(stats.stored_bytes),
                percent(stats.stored_bytes, stats.logical_bytes)
            ),
        ),
        row(
            "released",
            format!(
                "{} of values no record refers to, removed by the next maintenance run",
                bytes(stats.released_bytes)
            ),
        ),
        row(
            "file size",
            format!(
                "{} (database and WAL, with indexes and free pages)",
                bytes(stats.file_bytes)
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(1_760_000_207_530), "2025-10-09T08:56:47.530Z");
        assert_eq!(time(-1), "-1 ms since the epoch");
        assert_eq!(time(i64::MAX), format!("{} ms since the epoch", i64::MAX));
    }

    #[test]
    fn percent_of_nothing_is_a_dash() {
        assert_eq!(percent(1, 0), "-");
        assert_eq!(percent(1, 4), "25.0%");
    }
}
