//! `strongbox delete COLLECTION KEY`: delete a record, optionally on a version.

use anyhow::Context as _;
use strongbox::{Expect, Store, Version};

use crate::cli::GlobalOptions;
use crate::commands::{Access, Failure};
use crate::output::Output;

/// Options of `strongbox delete COLLECTION KEY`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Delete only if the record is currently at this version (else exit code 5).
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

/// Deletes the record and prints `deleted COLLECTION/KEY`.
///
/// # Errors
/// [`Failure::NotFound`] (exit code 3) when the key does not exist; a failed `--if-version`
/// (exit code 5); an invalid name; a busy database.
pub async fn run(global: &GlobalOptions, args: DeleteArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Write).await?;
    let result = delete(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn delete(store: &Store, args: &DeleteArgs) -> anyhow::Result<()> {
    let expect = args.if_version.map_or(Expect::Any, |version| {
        Expect::Version(Version::new(version))
    });
    let existed = store
        .delete_if(&args.collection, &args.key, expect)
        .await
        .with_context(|| format!("delete {}/{}", args.collection, args.key))?;
    if !existed {
        return Err(Failure::NotFound {
            collection: args.collection.clone(),
            keys: vec![args.key.clone()],
        }
        .into());
    }
    let mut out = Output::stdout();
    out.line(format_args!("deleted {}/{}", args.collection, args.key))?;
    out.finish()
}
