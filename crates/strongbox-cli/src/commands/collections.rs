//! `strongbox collections`: the collections with their record counts.

use anyhow::Context as _;
use serde::Serialize;
use strongbox::Store;

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::output::{self, Output};

/// Options of `strongbox collections`.
#[derive(Debug, clap::Args)]
pub struct CollectionsArgs {
    /// Print a JSON array of {"collection":..., "records":...} instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One collection in `--json` output.
#[derive(Debug, Serialize)]
struct Entry {
    collection: String,
    records: u64,
}

/// Prints one collection per line with its record count (or a JSON array with `--json`).
///
/// # Errors
/// A busy database, a closed standard output.
pub async fn run(global: &GlobalOptions, args: CollectionsArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = collections(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn collections(store: &Store, args: &CollectionsArgs) -> anyhow::Result<()> {
    let names = store.collections().await.context("list collections")?;
    let mut entries = Vec::with_capacity(names.len());
    for collection in names {
        let records = store
            .count(&collection)
            .await
            .with_context(|| format!("count collection {collection}"))?;
        entries.push(Entry {
            collection,
            records,
        });
    }
    let mut out = Output::stdout();
    if args.json {
        out.json(&entries)?;
    } else {
        let rows: Vec<(String, String)> = entries
            .into_iter()
            .map(|entry| (entry.collection, output::count(entry.records)))
            .collect();
        out.table(&rows)?;
    }
    out.finish()
}
