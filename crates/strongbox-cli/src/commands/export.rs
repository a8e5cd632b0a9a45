//! `strongbox export [COLLECTION]`: write records as JSON lines, the format `import` reads.
//!
//! Collections in order, keys in order: keys are listed a page at a time and each page's
//! values are read in parallel, so memory stays bounded by a page. Values are written as
//! stored, never parsed into numbers on the way. On a terminal, a bar on standard error counts
//! the records written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::value::RawValue;
use strongbox::Store;

use crate::cli::GlobalOptions;
use crate::commands::{Access, KeyPages, retrieve_mapped};
use crate::progress;

/// Options of `strongbox export [COLLECTION]`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Export only this collection (default: all of them).
    pub collection: Option<String>,
    /// Output file, created owner-only (mode 0600) and moved into place when complete; a device
    /// or FIFO (/dev/null) is written directly; `-` or nothing writes to standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One exported line.
#[derive(Serialize)]
struct Line<'a> {
    collection: &'a str,
    key: &'a str,
    value: &'a RawValue,
}

/// Exports one collection, or all of them, to `--out` or standard output.
///
/// # Errors
/// A corrupt value (exit code 7, naming the record), a busy database, an unwritable output.
pub async fn run(global: &GlobalOptions, args: ExportArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = export(&store, &args).await;
    crate::commands::close(store, result).await
}

async fn export(store: &Store, args: &ExportArgs) -> anyhow::Result<()> {
    let collections = match &args.collection {
        Some(collection) => vec![collection.clone()],
        None => store.collections().await.context("list collections")?,
    };
    let mut total = 0;
    if progress::is_drawn() {
        for collection in &collections {
            total += store
                .count(collection)
                .await
                .with_context(|| format!("count collection {collection}"))?;
        }
    }
    let bar = progress::counter("exporting", total);
    let exported = match args.out.as_deref().filter(|path| *path != Path::new("-")) {
        Some(path) => export_to_file(store, &collections, path, &bar).await,
        None => {
            let mut writer = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let written = write_all(store, &collections, &mut writer, &bar).await;
            written.and_then(|()| writer.flush().context("write to standard output"))
        }
    };
    bar.finish_and_clear();
    exported
}

/// Writes the export to `path`. A regular file (or a new one) is written beside it under a
/// temporary name, owner-only (mode 0600), synced, then renamed into place: an interrupted
/// export leaves an earlier file whole. Anything else (`/dev/null`, a FIFO, a terminal) is
/// written directly.
async fn export_to_file(
    store: &Store,
    collections: &[String],
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let shown = path.display();
    if let Ok(metadata) = fs::metadata(path)
        && !metadata.is_file()
    {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("open {shown} for writing"))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        write_all(store, collections, &mut writer, bar)
            .await
            .with_context(|| format!("export to {shown}"))?;
        return writer.flush().with_context(|| format!("write {shown}"));
    }
    // A symbolic link to a file: replace the file, keep the link.
    let target = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_symlink() => {
            fs::canonicalize(path).with_context(|| format!("follow the link {shown}"))?
        }
        _ => path.to_path_buf(),
    };
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // NamedTempFile creates its file with mode 0600 and removes it if the export fails.
    let temporary = tempfile::Builder::new()
        .prefix(".strongbox-export-")
        .tempfile_in(&directory)
        .with_context(|| format!("create a temporary file in {}", directory.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, temporary);
    write_all(store, collections, &mut writer, bar)
        .await
        .with_context(|| format!("export to {shown}"))?;
    let temporary = writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|temporary| temporary.as_file().sync_all().map(|()| temporary))
        .with_context(|| format!("write {shown}"))?;
    temporary
        .persist(&target)
        .map_err(|error| error.error)
        .with_context(|| format!("move the export into place at {shown}"))?;
    File::open(&directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("sync the directory {}", directory.display()))
}

async fn write_all(
    store: &Store,
    collections: &[String],
    writer: &mut impl Write,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    for collection in collections {
        bar.set_message(collection.clone());
        let mut pages = KeyPages::new(store, collection);
        while let Some(keys) = pages.next().await? {
            for (_, line) in retrieve_mapped(store, collection, &keys, to_line).await? {
                writer.write_all(&line).context("write a line")?;
                bar.inc(1);
            }
        }
    }
    Ok(())
}

/// One record as a line of JSON, newline included, with the value's stored text as it is (only
/// put on one line if a program stored it indented).
fn to_line(collection: &str, key: &str, value: Box<RawValue>) -> anyhow::Result<Vec<u8>> {
    let value = crate::json::one_line_raw(value)
        .with_context(|| format!("put the value of {collection}/{key} on one line"))?;
    let mut line = serde_json::to_vec(&Line {
        collection,
        key,
        value: &value,
    })
    .with_context(|| format!("serialize {collection}/{key}"))?;
    line.push(b'\n');
    Ok(line)
}
