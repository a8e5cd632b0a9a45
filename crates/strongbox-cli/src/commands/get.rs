//! `strongbox get COLLECTION KEY`: print a stored value, or its value with metadata.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use strongbox::Store;

use crate::cli::{GetArgs, GlobalOptions};
use crate::commands::Failure;
use crate::output::Output;

/// What `get --meta` prints: the value, then `strongbox::RecordMeta` (times in ms since the
/// epoch; read counts lag by the reads not yet flushed).
#[derive(Serialize)]
struct WithMeta<'a> {
    value: &'a Value,
    version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    size_bytes: u64,
    access_count: u64,
    last_accessed_ms: i64,
}

/// Prints the value as JSON (one line unless `--pretty`).
///
/// # Errors
/// [`Failure::NotFound`] (exit code 3) when the key does not exist; a corrupt value (exit
/// code 7), an invalid name, a busy database.
pub async fn run(global: &GlobalOptions, args: GetArgs) -> anyhow::Result<()> {
    let store = crate::commands::open(global).await?;
    let result = get(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn get(store: &Store, args: &GetArgs) -> anyhow::Result<()> {
    let record = store
        .retrieve_record::<Value>(&args.collection, &args.key)
        .await
        .with_context(|| format!("get {}/{}", args.collection, args.key))?
        .ok_or_else(|| Failure::NotFound {
            collection: args.collection.clone(),
            key: args.key.clone(),
        })?;
    let mut out = Output::stdout();
    if args.meta {
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
        out.json(&with_meta, args.pretty)?;
    } else {
        out.json(&record.value, args.pretty)?;
    }
    out.finish()
}
