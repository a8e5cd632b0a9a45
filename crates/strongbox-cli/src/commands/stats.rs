//! `strongbox stats`: what the database holds, and what deduplication and compression save.

use anyhow::Context as _;
use strongbox::Store;

use crate::cli::{GlobalOptions, StatsArgs};
use crate::output::{self, Output};

/// Prints the storage statistics (the `strongbox::StorageStats` fields as JSON with `--json`).
///
/// # Errors
/// A busy database, a closed standard output.
pub async fn run(global: &GlobalOptions, args: StatsArgs) -> anyhow::Result<()> {
    let store = crate::commands::open(global).await?;
    let result = stats(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn stats(store: &Store, args: &StatsArgs) -> anyhow::Result<()> {
    let stats = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    let mut out = Output::stdout();
    if args.json {
        out.json(&stats, false)?;
    } else {
        out.line(format_args!(
            "database       {}",
            store.config().path.display()
        ))?;
        out.table(&output::storage_rows(&stats))?;
    }
    out.finish()
}
