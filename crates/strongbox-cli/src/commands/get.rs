//! `strongbox get COLLECTION KEY`: print a stored value, or its value with metadata.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::{RecordMeta, Store};

use crate::cli::GlobalOptions;
use crate::commands::{Access, Failure};
use crate::output::{self, Output};

/// Options of `strongbox get COLLECTION KEY`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Print indented JSON instead of one line.
    #[arg(long)]
    pub pretty: bool,
    /// Print the version, the times (RFC 3339, UTC), the read count and the size, then the
    /// value.
    #[arg(long)]
    pub meta: bool,
    /// With --meta: print {"value":..., "version":..., "created_at_ms":..., ...} (times in
    /// milliseconds since the Unix epoch). Without it, the value is printed as JSON anyway.
    #[arg(long)]
    pub json: bool,
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
}

/// Prints the value as JSON (one line unless `--pretty`), exactly as stored: the stored text is
/// printed, never parsed into numbers (a `u128` stored by a program prints in full).
///
/// # Errors
/// [`Failure::NotFound`] (exit code 3) when the key does not exist; a corrupt value (exit
/// code 7), an invalid name, a busy database.
pub async fn run(global: &GlobalOptions, args: GetArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = get(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn get(store: &Store, args: &GetArgs) -> anyhow::Result<()> {
    let record = store
        .retrieve_record::<Box<RawValue>>(&args.collection, &args.key)
        .await
        .with_context(|| format!("get {}/{}", args.collection, args.key))?
        .ok_or_else(|| Failure::NotFound {
            collection: args.collection.clone(),
            key: args.key.clone(),
        })?;
    let mut out = Output::stdout();
    let value = record.value.get();
    let shown = |text: &str| {
        if args.pretty {
            crate::json::pretty(text)
        } else {
            text.to_owned()
        }
    };
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
