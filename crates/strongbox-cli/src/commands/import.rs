//! `strongbox import FILE`: load JSON lines `{"collection":..., "key":..., "value":...}` in
//! batched transactions.
//!
//! A reading thread parses each line and adds it to the batch's transaction (which validates
//! and encodes the value at once), while this task commits the previous batch: parsing and
//! compression overlap with the disk. Batches commit in file order, so a later line for a key
//! replaces an earlier one, within a batch too.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use strongbox::{Store, Transaction};
use tokio::sync::mpsc;

use crate::cli::GlobalOptions;
use crate::lines::{LineRead, read_line, skip_line};
use crate::output::{self, Output};
use crate::progress;

/// Options of `strongbox import FILE`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// JSON lines file; `-` reads standard input. A value is refused, like `put` refuses it, when
    /// it would not be stored exactly as written; a line longer than max_value_bytes plus
    /// 64 KiB is refused without being read whole.
    pub file: PathBuf,
    /// Lines per transaction: a bad line discards its whole batch, earlier batches stay.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Skip bad lines (unparseable, missing fields, invalid names, too large), report how many.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Do not run maintenance afterwards. By default the import ends with one: collections that
    /// now hold enough values get a compression dictionary and are recompressed with it, and the
    /// space that frees goes back to the file system.
    #[arg(long)]
    pub no_maintenance: bool,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Skipped lines described one by one on standard error; further ones are only counted.
const SHOWN_SKIPS: u64 = 10;

/// Room on a line for what surrounds the value: the field names, the collection and key
/// (at most 255 and 1,024 bytes, up to six times longer when written with `\u` escapes) and
/// spacing. A line longer than `max_value_bytes` plus this is refused as soon as it is.
const ENVELOPE_BYTES: usize = 64 << 10;

/// One line of the import (and export) format. Other fields are ignored.
#[derive(Debug, Deserialize)]
struct Line {
    collection: String,
    key: String,
    /// The value's text as written, checked (see [`crate::json::check_exact`]) before parsing.
    value: Box<RawValue>,
}

/// A transaction ready to commit, with the lines it covers.
struct Batch {
    tx: Transaction,
    first_line: u64,
    last_line: u64,
}

/// How reading ended.
enum ReadEnd {
    /// Every line was read.
    Finished { lines: u64, skipped: u64 },
    /// A bad line stopped the import; its batch was discarded.
    BadLine {
        line: u64,
        why: String,
        batch_first_line: u64,
    },
    /// The committing side stopped listening (its error is the one reported).
    Abandoned,
}

/// What an import did, printed at the end.
#[derive(Debug, Serialize)]
struct Summary {
    lines: u64,
    records: u64,
    skipped: u64,
    /// Reading and committing, without the maintenance after it.
    elapsed_ms: u64,
    records_per_s: f64,
    /// Compression dictionaries trained after the import.
    dictionaries_trained: u64,
    /// Values recompressed with them.
    values_recompressed: u64,
    /// Bytes the maintenance after the import returned to the file system.
    bytes_reclaimed: u64,
}

/// Imports the file and prints a summary.
///
/// # Errors
/// A bad line without `--skip-invalid` (naming the line, after earlier batches committed), an
/// unreadable file, a failed commit (busy database...).
pub async fn run(global: &GlobalOptions, args: ImportArgs) -> anyhow::Result<()> {
    let (source, total_bytes) = open_source(&args.file)?;
    // The import trains every collection once at its end, on a sample of all it imported,
    // and says so: no training while it writes.
    let mut config = crate::config::load_single_pass(global)?;
    config.train_while_writing = false;
    let store = crate::commands::open_config(config).await?;
    let result = import(&store, &args, source, total_bytes).await;
    crate::commands::close(store, result).await
}

/// The input and its size when known.
fn open_source(file: &Path) -> anyhow::Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    if file == Path::new("-") {
        return Ok((Box::new(BufReader::new(io::stdin())), None));
    }
    let opened = File::open(file).with_context(|| format!("open {}", file.display()))?;
    let size = opened.metadata().ok().map(|metadata| metadata.len());
    Ok((Box::new(BufReader::with_capacity(1 << 20, opened)), size))
}

async fn import(
    store: &Store,
    args: &ImportArgs,
    source: Box<dyn BufRead + Send>,
    total_bytes: Option<u64>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = progress_bar(total_bytes);
    let (sender, mut receiver) = mpsc::channel::<Batch>(1);
    let reader = {
        let store = store.clone();
        let progress = progress.clone();
        let (batch_size, skip_invalid) = (args.batch_size, args.skip_invalid);
        tokio::task::spawn_blocking(move || {
            read(source, &store, batch_size, skip_invalid, &progress, &sender)
        })
    };

    let mut records = 0u64;
    let mut batches = 0u64;
    let mut commit_error = None;
    while let Some(batch) = receiver.recv().await {
        let count = batch.tx.len() as u64;
        if let Err(error) = batch.tx.commit().await {
            commit_error = Some(anyhow::Error::from(error).context(format!(
                "import lines {}-{}: commit the batch ({})",
                batch.first_line,
                batch.last_line,
                earlier(batches, records, batch.first_line)
            )));
            break;
        }
        records += count;
        batches += 1;
    }
    drop(receiver);
    let ended = reader.await.context("join the reading thread");
    progress.finish_and_clear();
    if let Some(error) = commit_error {
        return Err(error);
    }
    let (lines, skipped) = match ended?? {
        ReadEnd::Finished { lines, skipped } => (lines, skipped),
        ReadEnd::BadLine {
            line,
            why,
            batch_first_line,
        } => {
            return Err(anyhow!(
                "import line {line}: {why}\nnothing of its batch (the lines from {batch_first_line} on) \
                 was stored; {}\nfix the line and import again (records are replaced, not \
                 duplicated), or pass --skip-invalid",
                earlier(batches, records, batch_first_line)
            ));
        }
        ReadEnd::Abandoned => return Err(anyhow!("import stopped before the end of the input")),
    };
    let elapsed = started.elapsed();
    let mut summary = Summary {
        lines,
        records,
        skipped,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        records_per_s: per_second(records, elapsed),
        dictionaries_trained: 0,
        values_recompressed: 0,
        bytes_reclaimed: 0,
    };
    if !args.no_maintenance {
        let step = "maintenance after the import: training dictionaries, recompressing";
        let report = progress::while_running(step, store.maintenance())
            .await
            .context("run maintenance after the import (the records are stored)")?;
        summary.dictionaries_trained = report.dictionaries_trained;
        summary.values_recompressed = report.values_recompressed;
        summary.bytes_reclaimed = report.bytes_reclaimed;
        for error in &report.errors {
            tracing::warn!(%error, "a step of the maintenance after the import failed");
        }
    }
    print_summary(&summary, args.json)
}

/// What stays committed before a failed batch.
fn earlier(batches: u64, records: u64, first_line: u64) -> String {
    if batches == 0 {
        "no earlier batch was committed".to_owned()
    } else if batches == 1 {
        format!(
            "the earlier batch (lines 1-{}, {} records) stays committed",
            first_line - 1,
            output::count(records)
        )
    } else {
        format!(
            "the {} earlier batches (lines 1-{}, {} records) stay committed",
            output::count(batches),
            first_line - 1,
            output::count(records)
        )
    }
}

fn per_second(records: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    }
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    if json {
        out.json(summary)?;
    } else {
        out.line(format_args!(
            "imported {} lines: {} records written, {} skipped, in {:.2} s ({} records/s)",
            output::count(summary.lines),
            output::count(summary.records),
            output::count(summary.skipped),
            summary.elapsed_ms as f64 / 1000.0,
            output::count(summary.records_per_s.round() as u64)
        ))?;
        if summary.dictionaries_trained > 0 {
            out.line(format_args!(
                "trained {} compression dictionaries: {} values recompressed, {} of file reclaimed",
                summary.dictionaries_trained,
                output::count(summary.values_recompressed),
                output::bytes(summary.bytes_reclaimed)
            ))?;
        }
    }
    out.finish()
}

/// A progress bar by bytes on standard error (a spinner when the size is unknown); hidden
/// unless standard error is a terminal.
fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    let template = match total_bytes {
        Some(_) => {
            "{spinner} importing [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} \
             ({binary_bytes_per_sec}, eta {eta})"
        }
        None => "{spinner} importing [{elapsed_precise}] {binary_bytes} ({binary_bytes_per_sec})",
    };
    progress::bar(template, total_bytes)
}

/// Reads lines into transactions of `batch_size` lines and hands each to the committing task.
/// Runs on a blocking thread.
fn read(
    mut source: Box<dyn BufRead + Send>,
    store: &Store,
    batch_size: u64,
    skip_invalid: bool,
    progress: &ProgressBar,
    sender: &mpsc::Sender<Batch>,
) -> anyhow::Result<ReadEnd> {
    let max_value_bytes = store.config().max_value_bytes;
    let max_line = max_value_bytes.saturating_add(ENVELOPE_BYTES);
    let mut buffer = Vec::with_capacity(64 << 10);
    let mut line = 0u64;
    let mut skipped = 0u64;
    let mut batch_first_line = 1u64;
    let mut tx = store.transaction();
    loop {
        let read = read_line(&mut source, &mut buffer, max_line)
            .with_context(|| format!("import line {}: read the input", line + 1))?;
        let added = match read {
            LineRead::End => break,
            LineRead::Line(bytes) => {
                line += 1;
                progress.inc(bytes as u64);
                add_line(&mut tx, &buffer)
            }
            LineRead::TooLong(bytes) => {
                line += 1;
                progress.inc(bytes as u64);
                let why = format!(
                    "the line is longer than {} bytes, the most a line may hold \
                     (max_value_bytes = {} plus {} for the collection, key and field names); \
                     raise max_value_bytes in the --config file to import it",
                    output::count(max_line as u64),
                    output::count(max_value_bytes as u64),
                    output::count(ENVELOPE_BYTES as u64),
                );
                if skip_invalid {
                    let rest = skip_line(&mut source)
                        .with_context(|| format!("import line {line}: read the input"))?;
                    progress.inc(rest);
                }
                Err(why)
            }
        };
        if let Err(why) = added {
            if !skip_invalid {
                return Ok(ReadEnd::BadLine {
                    line,
                    why,
                    batch_first_line,
                });
            }
            skipped += 1;
            if skipped <= SHOWN_SKIPS {
                progress.suspend(|| {
                    let mut stderr = io::stderr().lock();
                    let _ = writeln!(stderr, "line {line}: {why} (skipped)");
                    if skipped == SHOWN_SKIPS {
                        let _ = writeln!(stderr, "further skipped lines are only counted");
                    }
                });
            }
        }
        if line - batch_first_line + 1 == batch_size {
            let full = std::mem::replace(&mut tx, store.transaction());
            if !send(sender, full, batch_first_line, line) {
                return Ok(ReadEnd::Abandoned);
            }
            batch_first_line = line + 1;
        }
    }
    if !send(sender, tx, batch_first_line, line) {
        return Ok(ReadEnd::Abandoned);
    }
    Ok(ReadEnd::Finished {
        lines: line,
        skipped,
    })
}

/// Hands a non-empty batch over; false when the committing side is gone.
fn send(sender: &mpsc::Sender<Batch>, tx: Transaction, first_line: u64, last_line: u64) -> bool {
    tx.is_empty()
        || sender
            .blocking_send(Batch {
                tx,
                first_line,
                last_line,
            })
            .is_ok()
}

/// Parses one line and adds its write to the transaction; blank lines add nothing.
/// The error says why the line is bad.
fn add_line(tx: &mut Transaction, bytes: &[u8]) -> Result<(), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let parsed: Line = serde_json::from_slice(bytes)
        .map_err(|error| format!("parse JSON: {}", describe(&error)))?;
    // Parsed as a whole first: serde_json bounds the nesting, which RawValue alone does not.
    let value: Value = serde_json::from_str(parsed.value.get())
        .map_err(|error| format!("parse the value: {}", describe(&error)))?;
    crate::json::check_exact(parsed.value.get())
        .map_err(|inexact| format!("value of {}/{}: {inexact}", parsed.collection, parsed.key))?;
    tx.store(&parsed.collection, &parsed.key, &value)
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// serde_json's message, with the column but without "at line 1": within this line, which would
/// mislead here.
fn describe(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(message) => format!("{message} (column {})", error.column()),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::add_line;

    /// Lines shaped like the format, with arbitrary pieces, and arbitrary bytes.
    fn line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<String>(), any::<String>(), any::<String>()).prop_map(
                |(collection, key, value)| {
                    format!(r#"{{"collection":{collection:?},"key":{key:?},"value":{value}}}"#)
                        .into_bytes()
                }
            ),
            (".{0,40}", ".{0,40}").prop_map(|(collection, key)| {
                serde_json::json!({"collection": collection, "key": key, "value": [1, {"a": null}]})
                    .to_string()
                    .into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("STRONGBOX_PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(500),
            ..ProptestConfig::default()
        })]

        /// The import parser never panics: a line is added or refused with a reason.
        #[test]
        fn any_line_is_added_or_refused_with_a_reason(bytes in line()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            runtime.block_on(async {
                let store = strongbox::Store::open(strongbox::Config::new(dir.path().join("f.db"))).await.unwrap();
                let mut tx = store.transaction();
                let before = tx.len();
                match add_line(&mut tx, &bytes) {
                    Ok(()) => prop_assert!(tx.len() <= before + 1),
                    Err(reason) => {
                        prop_assert!(!reason.is_empty());
                        prop_assert_eq!(tx.len(), before);
                    }
                }
                drop(tx);
                store.close().await.unwrap();
                Ok(())
            })?;
        }
    }
}
