//! `strongbox export [COLLECTION]`: write records as JSON lines, the format `import` reads.
//!
//! Collections in order, keys in order: keys are listed a page at a time and each page's
//! values are read in parallel, so memory stays bounded by a page.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use strongbox::{ListOptions, Store};

use crate::cli::{ExportArgs, GlobalOptions};
use crate::commands::{PAGE_KEYS, retrieve_mapped};

/// One exported line.
#[derive(Serialize)]
struct Line<'a> {
    collection: &'a str,
    key: &'a str,
    value: &'a Value,
}

/// Exports one collection, or all of them, to `--out` or standard output.
///
/// # Errors
/// A corrupt value (exit code 7, naming the record), a busy database, an unwritable output.
pub async fn run(global: &GlobalOptions, args: ExportArgs) -> anyhow::Result<()> {
    let store = crate::commands::open(global).await?;
    let result = export(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn export(store: &Store, args: &ExportArgs) -> anyhow::Result<()> {
    let collections = match &args.collection {
        Some(collection) => vec![collection.clone()],
        None => store.collections().await.context("list collections")?,
    };
    match args.out.as_deref().filter(|path| *path != Path::new("-")) {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            write_all(store, &collections, &mut writer)
                .await
                .with_context(|| format!("export to {}", path.display()))?;
            writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)
                .and_then(|file| file.sync_all())
                .with_context(|| format!("write {}", path.display()))
        }
        None => {
            let mut writer = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            write_all(store, &collections, &mut writer).await?;
            writer.flush().context("write to standard output")
        }
    }
}

async fn write_all(
    store: &Store,
    collections: &[String],
    writer: &mut impl Write,
) -> anyhow::Result<()> {
    for collection in collections {
        let mut after: Option<String> = None;
        loop {
            let mut options = ListOptions::all().limit(PAGE_KEYS);
            options.start_after = after.take();
            let keys = store
                .list(collection, options)
                .await
                .with_context(|| format!("list collection {collection}"))?;
            for (_, line) in retrieve_mapped(store, collection, &keys, to_line).await? {
                writer.write_all(&line).context("write a line")?;
            }
            if keys.len() < PAGE_KEYS {
                break;
            }
            after = keys.last().cloned();
        }
    }
    Ok(())
}

/// One record as a line of JSON, newline included.
fn to_line(collection: &str, key: &str, value: Value) -> anyhow::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&Line {
        collection,
        key,
        value: &value,
    })
    .with_context(|| format!("serialize {collection}/{key}"))?;
    line.push(b'\n');
    Ok(line)
}
