//! `strongbox get COLLECTION KEY`: print a stored value, or its value with metadata.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::Store;

use crate::cli::GlobalOptions;
use crate::commands::Failure;
use crate::output::Output;

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
    /// Print {"value":..., "version":..., "created_at_ms":..., ...} instead of the bare value.
    #[arg(long)]
    pub meta: bool,
}

/// What `get --meta` prints: the value, then `strongbox::RecordMeta` (times in ms since the
/// epoch; read counts lag by the reads not yet flushed).
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
    let store = crate::commands::open_existing(global).await?;
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
    let text = if args.meta {
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
        serde_json::to_string(&with_meta).context("serialize JSON")?
    } else {
        record.value.get().to_owned()
    };
    let mut out = Output::stdout();
    if args.pretty {
        out.line(crate::json::pretty(&text))?;
    } else {
        out.line(text)?;
    }
    out.finish()
}
