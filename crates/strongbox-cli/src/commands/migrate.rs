//! `strongbox migrate --from PATH|URL --to PATH|URL`: copy a store to another database.

use anyhow::Context as _;

use crate::cli::GlobalOptions;
use crate::location::{Location, LocationParser};
use crate::output::{self, Output};
use crate::progress;

/// Options of `strongbox migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The database to copy: a file path or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL", value_parser = LocationParser)]
    pub from: Location,
    /// The database to copy into (created if missing; it must hold no records).
    #[arg(long, value_name = "PATH|URL", value_parser = LocationParser)]
    pub to: Location,
    /// Print the summary as one JSON object (records, blobs, logical_bytes, elapsed_ms).
    #[arg(long)]
    pub json: bool,
}

/// Copies every record, with versions and metadata, verifies the copy and prints a summary.
///
/// # Errors
/// When either database cannot be opened, the target is not empty, or the copy fails
/// verification.
pub async fn run(global: &GlobalOptions, args: MigrateArgs) -> anyhow::Result<()> {
    let base = crate::config::load_single_pass(global)?;
    let located = |location: &Location| {
        let mut config = base.clone();
        location.apply_to(&mut config);
        config.backup_repository = None;
        config
    };
    let mut source = crate::config::for_reading(located(&args.from));
    source.create_if_missing = false;
    let source = crate::commands::open_config(source).await?;
    let target = match crate::commands::open_config(located(&args.to)).await {
        Ok(target) => target,
        Err(error) => return crate::commands::close(source, Err(error)).await,
    };
    let bar = progress::counter("migrating", 0);
    bar.set_message("records");
    let result = source
        .copy_into(&target, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await
        .with_context(|| {
            format!(
                "copy {} into {}",
                source.config().location(),
                target.config().location()
            )
        });
    bar.finish_and_clear();
    let printed = result.and_then(|summary| {
        let mut out = Output::stdout();
        if args.json {
            out.json(&summary)?;
        } else {
            out.line(format_args!(
                "copied {} records ({} unique values, {}) in {} ms; the copy verified clean",
                output::count(summary.records),
                output::count(summary.blobs),
                output::bytes(summary.logical_bytes),
                summary.elapsed_ms
            ))?;
        }
        out.finish()
    });
    let printed = crate::commands::close(target, printed).await;
    crate::commands::close(source, printed).await
}
