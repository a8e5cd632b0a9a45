//! `strongbox scan COLLECTION`: records in key order (or reversed), with their versions and
//! values, streamed page by page through `Collection::scan`: each entry is printed as it comes,
//! so memory stays bounded whatever the collection's size.

use std::ops::Bound;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::{Scan, Store};

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::output::Output;

/// Options of `strongbox scan COLLECTION`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Collection name.
    #[arg(value_parser = parse_collection)]
    pub collection: String,
    /// Only keys starting with this prefix (with --from or --to: the keys in both).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Only keys from this one on (inclusive).
    #[arg(long, value_name = "KEY")]
    pub from: Option<String>,
    /// Only keys before this one (exclusive: --from a --to b is every key from a up to, but
    /// not including, b).
    #[arg(long, value_name = "KEY")]
    pub to: Option<String>,
    /// From the highest key down.
    #[arg(long)]
    pub reverse: bool,
    /// At most this many records (at least 1).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Print one JSON object a line, {"key":..., "version":..., "value":...}, instead of
    /// `KEY  vVERSION  VALUE`.
    #[arg(long)]
    pub json: bool,
}

impl ScanArgs {
    /// What clap cannot check alone: a range whose start comes after its end.
    pub fn usage_error(&self) -> Option<String> {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) if from > to => Some(format!(
                "--from {from:?} comes after --to {to:?}: keys are in byte order, --from \
                 inclusive, --to exclusive (--reverse reads the range from its end)"
            )),
            _ => None,
        }
    }

    /// The records the options select.
    fn scan(&self) -> Scan {
        let scan = match &self.prefix {
            Some(prefix) => Scan::prefix(prefix.as_str()),
            None => Scan::all(),
        };
        let from = self
            .from
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Included);
        let to = self.to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let scan = scan.within((from, to));
        let scan = if self.reverse { scan.reverse() } else { scan };
        match self.limit {
            Some(limit) => scan.limit(limit),
            None => scan,
        }
    }
}

/// A collection name as the library accepts it (a usage error otherwise, exit code 2).
pub fn parse_collection(text: &str) -> Result<String, String> {
    strongbox::name::validate_collection(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

/// `--limit N`: a count of at least 1 (a usage error otherwise, exit code 2).
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("scan at least 1 record (omit --limit to scan them all)".into()),
        Ok(count) => Ok(count),
        Err(error) => Err(format!("not a count of records: {error}")),
    }
}

/// One entry of `scan --json`.
#[derive(Serialize)]
struct Line<'a> {
    key: &'a str,
    version: u64,
    value: &'a RawValue,
}

/// Prints the records the options select, one per line, as they are read. An empty range (or
/// a collection that does not exist) prints nothing.
///
/// # Errors
/// A corrupt value (exit code 7, naming the record), a busy database, a closed standard output.
pub async fn run(global: &GlobalOptions, args: ScanArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = scan(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn scan(store: &Store, args: &ScanArgs) -> anyhow::Result<()> {
    let collection = store
        .collection::<Box<RawValue>>(&args.collection)
        .with_context(|| format!("scan collection {}", args.collection))?;
    let mut entries = collection.scan(args.scan());
    let mut out = Output::stdout();
    while let Some(entry) = entries
        .try_next()
        .await
        .with_context(|| format!("scan collection {}", args.collection))?
    {
        let value = crate::json::one_line_raw(entry.value).with_context(|| {
            format!(
                "put the value of {}/{} on one line",
                args.collection, entry.key
            )
        })?;
        if args.json {
            out.json(&Line {
                key: &entry.key,
                version: entry.version.get(),
                value: &value,
            })?;
        } else {
            out.line(format_args!(
                "{}  v{}  {}",
                entry.key,
                entry.version,
                value.get()
            ))?;
        }
    }
    out.finish()
}
