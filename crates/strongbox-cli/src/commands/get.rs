//! `strongbox get COLLECTION KEY...`: print a stored value, or its value with metadata; or the
//! values of several keys, read in one round trip.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::{RecordMeta, Store};

use crate::cli::GlobalOptions;
use crate::commands::{Access, Failure};
use crate::output::{self, Output};

/// Options of `strongbox get COLLECTION KEY...`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Collection name.
    pub collection: String,
    /// Key. Several keys are read in one round trip, from one commit, and printed in the order
    /// given, each with its value (or `(not found)`); exit code 3 if any is absent.
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
    /// Print indented JSON instead of one line.
    #[arg(long)]
    pub pretty: bool,
    /// Print the version, the times (RFC 3339, UTC), the read count and the size, then the
    /// value (one key only).
    #[arg(long)]
    pub meta: bool,
    /// With --meta: print {"value":..., "version":..., "created_at_ms":..., ...} (times in
    /// milliseconds since the Unix epoch). With several keys: one line a key, in the order
    /// given, {"key":..., "is_found":true, "value":...} or {"key":..., "is_found":false}.
    /// Otherwise the value is printed as JSON anyway.
    #[arg(long)]
    pub json: bool,
}

impl GetArgs {
    /// What clap cannot check alone: `--meta` with several keys.
    pub fn usage_error(&self) -> Option<String> {
        (self.meta && self.keys.len() > 1).then(|| {
            "--meta reads one key (several keys are read together, without their metadata); \
             run `get --meta` once a key, or `scan --json` for the versions of many"
                .to_owned()
        })
    }
}

/// What `get --meta --json` prints: the value, then `strongbox::RecordMeta` (times in ms since
/// the epoch; read counts lag by the reads not yet flushed).
#[derive(Serialize)]
struct WithMeta<'a> {
    value: &'a RawValue,
    version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    size_bytes: u64,
    access_count: u64,
    last_accessed_ms: i64,
    /// When the record expires; absent for one that never does.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
}

/// One line of `get --json` with several keys.
#[derive(Serialize)]
struct KeyLine<'a> {
    key: &'a str,
    is_found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
}

/// Prints the value as JSON (one line unless `--pretty`), exactly as stored: the stored text is
/// printed, never parsed into numbers (a `u128` stored by a program prints in full). With
/// several keys, prints each key with its value.
///
/// # Errors
/// [`Failure::NotFound`] (exit code 3) when the key does not exist, or any of several keys
/// (after printing them all); a corrupt value (exit code 7), an invalid name, a busy database.
pub async fn run(global: &GlobalOptions, args: GetArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = match args.keys.as_slice() {
        [key] => get(&store, &args, key).await,
        keys => get_many(&store, &args, keys).await,
    };
    crate::commands::close(store, result).await
}

/// The text of a value as `--pretty` asks: indented, or as stored.
fn shown(args: &GetArgs, text: &str) -> String {
    if args.pretty {
        crate::json::pretty(text)
    } else {
        text.to_owned()
    }
}

async fn get(store: &Store, args: &GetArgs, key: &str) -> anyhow::Result<()> {
    let record = store
        .retrieve_record::<Box<RawValue>>(&args.collection, key)
        .await
        .with_context(|| format!("get {}/{key}", args.collection))?
        .ok_or_else(|| Failure::NotFound {
            collection: args.collection.clone(),
            keys: vec![key.to_owned()],
        })?;
    let mut out = Output::stdout();
    let value = record.value.get();
    let shown = |text: &str| shown(args, text);
    match (args.meta, args.json) {
        (false, _) => out.line(shown(value))?,
        (true, true) => {
            let meta = record.meta;
            let with_meta = WithMeta {
                value: &record.value,
                version: meta.version.get(),
                created_at_ms: meta.created_at_ms,
                updated_at_ms: meta.updated_at_ms,
                size_bytes: meta.size_bytes,
                access_count: meta.access_count,
                last_accessed_ms: meta.last_accessed_ms,
                expires_at_ms: meta.expires_at_ms,
            };
            let text = serde_json::to_string(&with_meta).context("serialize JSON")?;
            out.line(shown(&text))?;
        }
        (true, false) => {
            let mut rows = meta_rows(&record.meta);
            let value = shown(value);
            if value.contains('\n') {
                out.table(&rows)?;
                out.line("value")?;
                out.line(value)?;
            } else {
                rows.push(("value".to_owned(), value));
                out.table(&rows)?;
            }
        }
    }
    out.finish()
}

/// Several keys read in one round trip, printed in the order given: `KEY  VALUE` rows (keys
/// padded to the widest), or one JSON line a key; then [`Failure::NotFound`] if any was absent.
async fn get_many(store: &Store, args: &GetArgs, keys: &[String]) -> anyhow::Result<()> {
    let collection = &args.collection;
    let context = || format!("get {} keys of collection {collection}", keys.len());
    // Each key is read once, however often it is asked for.
    let unique: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let values = store
        .collection::<Box<RawValue>>(collection)
        .with_context(context)?
        .get_many(&unique)
        .await
        .with_context(context)?;
    let mut found = BTreeMap::new();
    for (key, value) in unique.into_iter().zip(values) {
        if let Some(value) = value {
            let value = crate::json::one_line_raw(value)
                .with_context(|| format!("put the value of {collection}/{key} on one line"))?;
            found.insert(key, value);
        }
    }
    let mut out = Output::stdout();
    if args.json {
        for key in keys {
            let value = found.get(key.as_str()).map(|value| &**value);
            let line = KeyLine {
                key,
                is_found: value.is_some(),
                value,
            };
            let text = serde_json::to_string(&line).context("serialize JSON")?;
            out.line(shown(args, &text))?;
        }
    } else {
        let rows: Vec<(String, String)> = keys
            .iter()
            .map(|key| {
                let text = found.get(key.as_str()).map_or_else(
                    || "(not found)".to_owned(),
                    |value| shown(args, value.get()),
                );
                (key.clone(), text)
            })
            .collect();
        out.table(&rows)?;
    }
    out.finish()?;
    let mut named = BTreeSet::new();
    let missing: Vec<String> = keys
        .iter()
        .filter(|key| !found.contains_key(key.as_str()) && named.insert(key.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::NotFound {
            collection: collection.clone(),
            keys: missing,
        }
        .into())
    }
}

/// `--meta` for people: times in RFC 3339 (UTC), sizes in binary units.
fn meta_rows(meta: &RecordMeta) -> Vec<(String, String)> {
    let last_read = match meta.last_accessed_ms {
        0 => "never".to_owned(),
        ms => output::time(ms),
    };
    [
        ("version", meta.version.get().to_string()),
        ("created", output::time(meta.created_at_ms)),
        ("updated", output::time(meta.updated_at_ms)),
        ("last read", last_read),
        ("reads", output::count(meta.access_count)),
        (
            "expires",
            meta.expires_at_ms
                .map_or_else(|| "never".to_owned(), output::time),
        ),
        (
            "size",
            format!(
                "{} (serialized, before compression)",
                output::bytes(meta.size_bytes)
            ),
        ),
    ]
    .into_iter()
    .map(|(label, text)| (label.to_owned(), text))
    .collect()
}
