//! `strongbox watch [COLLECTION]`: follow the change feed until interrupted.

use anyhow::Context as _;
use futures_util::StreamExt as _;
use strongbox::ChangeFilter;

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::commands::changes::print_change;
use crate::output::Output;

/// Options of `strongbox watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only the changes of this collection.
    pub collection: Option<String>,
    /// Start after this sequence number (0: from the oldest held); to resume, give the last
    /// `seq` printed.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub from: u64,
    /// Print one JSON object per change, as `strongbox changes --json` does.
    #[arg(long)]
    pub json: bool,
}

/// Prints the changes after `--from`, then each new one as it commits, until Ctrl-C (exit
/// code 0).
///
/// # Errors
/// When the database cannot be read; `changes_trimmed` when changes after `--from` were
/// trimmed, or were trimmed before this watch printed them.
pub async fn run(global: &GlobalOptions, args: WatchArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let filter = match &args.collection {
        Some(collection) => ChangeFilter::all().collection(collection),
        None => ChangeFilter::all(),
    };
    let mut changes = store.subscribe(args.from, filter);
    let result = async {
        let mut out = Output::stdout();
        loop {
            let next = tokio::select! {
                next = changes.next() => next,
                stopped = tokio::signal::ctrl_c() => {
                    return stopped.context("listen for Ctrl-C");
                }
            };
            let Some(change) = next else {
                return Ok(());
            };
            let change = change.context("follow the change feed")?;
            print_change(&mut out, &change, args.json)?;
            // Each change is shown as it arrives, not when a buffer fills.
            out.flush()?;
        }
    }
    .await;
    drop(changes);
    crate::commands::close(store, result).await
}
