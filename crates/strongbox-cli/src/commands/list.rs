//! `strongbox list COLLECTION`: the keys of a collection in order, page by page.

use anyhow::Context as _;
use strongbox::{ListOptions, Store};

use crate::cli::GlobalOptions;
use crate::commands::{Access, PAGE_KEYS};
use crate::output::Output;

/// Options of `strongbox list COLLECTION`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Collection name.
    pub collection: String,
    /// Only keys starting with this prefix.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Only keys after this one (pass the last key of a page to get the next page).
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
    /// At most this many keys.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print a JSON array instead of one key per line.
    #[arg(long)]
    pub json: bool,
}

/// Prints the keys, one per line (or a JSON array with `--json`).
///
/// # Errors
/// An invalid collection name, a busy database, a closed standard output.
pub async fn run(global: &GlobalOptions, args: ListArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = list(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn list(store: &Store, args: &ListArgs) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut after = args.start_after.clone();
    let mut all = Vec::new();
    while remaining > 0 {
        let mut options = ListOptions::all().limit(remaining.min(PAGE_KEYS));
        options.prefix.clone_from(&args.prefix);
        options.start_after = after.take();
        let page = store
            .list(&args.collection, options)
            .await
            .with_context(|| format!("list collection {}", args.collection))?;
        let full = page.len() == remaining.min(PAGE_KEYS);
        remaining -= page.len();
        after = page.last().cloned();
        if args.json {
            all.extend(page);
        } else {
            for key in &page {
                out.line(key)?;
            }
        }
        if !full {
            break;
        }
    }
    if args.json {
        out.json(&all)?;
    }
    out.finish()
}
