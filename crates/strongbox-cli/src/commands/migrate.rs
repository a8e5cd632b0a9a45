//! `strongbox migrate --from PATH|URL --to PATH|URL`: copy a store to another database.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use strongbox::Config;

use crate::cli::GlobalOptions;
use crate::output::{self, Output};

/// Options of `strongbox migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The database to copy: a file path or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub from: String,
    /// The database to copy into (created if missing; it must hold no records).
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Print the summary as JSON.
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
    let located = |location: &str| {
        let mut config = base.clone();
        let at = Config::for_location(location);
        config.path = at.path;
        config.postgres_url = at.postgres_url;
        config.backup_repository = None;
        config
    };
    let mut source = located(&args.from);
    source.create_if_missing = false;
    let source = crate::commands::open_config(source).await?;
    let target = match crate::commands::open_config(located(&args.to)).await {
        Ok(target) => target,
        Err(error) => return crate::commands::close(source, Err(error)).await,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("migrating [{bar:30}] {pos}/{len} records ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
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
            out.json(&summary, true)?;
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
