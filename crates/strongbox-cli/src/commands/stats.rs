//! `strongbox stats`: what the database holds, and what deduplication and compression save.

use anyhow::Context as _;
use strongbox::Store;

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::output::{self, Output};

/// Options of `strongbox stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one JSON object (records, collections, logical_bytes, stored_bytes, file_bytes...).
    #[arg(long)]
    pub json: bool,
    /// Print again every SECS seconds until interrupted (a JSON object per line with --json).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

/// Prints the storage statistics (the `strongbox::StorageStats` fields as JSON with `--json`),
/// naming the database by its path or redacted URL.
///
/// # Errors
/// A busy database, a closed standard output.
pub async fn run(global: &GlobalOptions, args: StatsArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = match args.watch {
        None => stats(&store, &args).await,
        Some(secs) => watch(&store, &args, secs.max(1)).await,
    };
    crate::commands::close(store, result).await
}

/// Prints the statistics every `secs` seconds (clearing a terminal first) until Ctrl-C.
async fn watch(store: &Store, args: &StatsArgs, secs: u64) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let clear = !args.json && std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(secs));
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            stopped = tokio::signal::ctrl_c() => return stopped.context("listen for Ctrl-C"),
        }
        if clear {
            // ANSI: clear the screen and move the cursor home.
            Output::stdout().line("\x1b[2J\x1b[H")?;
        }
        stats(store, args).await?;
    }
}

async fn stats(store: &Store, args: &StatsArgs) -> anyhow::Result<()> {
    let stats = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    let replicas = store.replica_stats().await;
    let mut out = Output::stdout();
    if args.json {
        out.json(&Shown {
            storage: stats,
            replicas,
        })?;
    } else {
        let mut rows = vec![("database".to_owned(), store.config().location())];
        rows.extend(output::storage_rows(&stats));
        if let Some(replicas) = &replicas {
            rows.push(output::replica_row(replicas));
        }
        out.table(&rows)?;
    }
    out.finish()
}

/// What `--json` prints: the storage totals' fields, and the replicas' when there are any.
#[derive(serde::Serialize)]
struct Shown {
    #[serde(flatten)]
    storage: strongbox::StorageStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<strongbox::ReplicaStats>,
}
