//! The subcommands, one module each with its options, and what they share: opening and closing
//! the store, the failures with their own exit codes, walking a collection's keys page by page,
//! and reading many values in parallel.

pub mod backup;
pub mod backup_browse;
pub mod backup_follow;
pub mod backup_key;
pub mod backup_open;
pub mod backup_prune;
pub mod changes;
pub mod collections;
pub mod completions;
pub mod delete;
pub mod demo;
pub mod export;
pub mod get;
pub mod import;
pub mod list;
pub mod maintenance;
pub mod man;
pub mod migrate;
pub mod put;
pub mod scan;
pub mod serve_metrics;
pub mod stats;
pub mod verify;
pub mod watch;

use std::fmt;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use strongbox::{Config, ListOptions, Store};

use crate::cli::{Cli, Command, GlobalOptions};

/// Keys asked of `Store::list` at a time when walking a whole collection.
pub const PAGE_KEYS: usize = 1000;

/// A failure of a command that is not a library error but has its own exit code.
#[derive(Debug)]
pub enum Failure {
    /// The key does not exist, or some of several keys do not (exit code 3).
    NotFound {
        /// Collection asked for.
        collection: String,
        /// The keys asked for that do not exist, each once, in the order asked.
        keys: Vec<String>,
    },
    /// Verification found problems (exit code 4).
    Problems {
        /// How many.
        count: usize,
    },
}

/// Missing keys a [`Failure::NotFound`] names; it counts the others.
const NOT_FOUND_SHOWN: usize = 10;

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotFound { collection, keys } => {
                f.write_str("not found: ")?;
                for (at, key) in keys.iter().take(NOT_FOUND_SHOWN).enumerate() {
                    let separator = if at == 0 { "" } else { ", " };
                    write!(f, "{separator}{collection}/{key}")?;
                }
                match keys.len().saturating_sub(NOT_FOUND_SHOWN) {
                    0 => Ok(()),
                    more => write!(f, " and {more} more"),
                }
            }
            Failure::Problems { count } => write!(
                f,
                "verify found {count} problem{}",
                if *count == 1 { "" } else { "s" }
            ),
        }
    }
}

impl std::error::Error for Failure {}

/// Runs the subcommand the command line names.
///
/// # Errors
/// Whatever the subcommand fails with; `main` maps it to an exit code.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Put(args) => put::run(&global, args).await,
        Command::Get(args) => get::run(&global, args).await,
        Command::Delete(args) => delete::run(&global, args).await,
        Command::List(args) => list::run(&global, args).await,
        Command::Scan(args) => scan::run(&global, args).await,
        Command::Collections(args) => collections::run(&global, args).await,
        Command::Import(args) => import::run(&global, args).await,
        Command::Export(args) => export::run(&global, args).await,
        Command::Stats(args) => stats::run(&global, args).await,
        Command::Verify(args) => verify::run(&global, args).await,
        Command::Demo(args) => demo::run(&global, args).await,
        Command::Maintenance(args) => maintenance::run(&global, args).await,
        Command::ServeMetrics(args) => serve_metrics::run(&global, args).await,
        Command::Bench { .. } => Err(anyhow::anyhow!(
            "the benchmark is not part of `strongbox` any more: in the Strongbox repository, run \
             `cargo run --release -p strongbox-bench` (it generates its data; --help for more)"
        )),
        Command::Changes(args) => changes::run(&global, args).await,
        Command::Watch(args) => watch::run(&global, args).await,
        Command::Backup(args) => backup::run(&global, args).await,
        Command::Migrate(args) => migrate::run(&global, args).await,
        Command::Completions(args) => completions::run(&args),
        Command::Man => man::run(),
    }
}

/// Opens the store the global options name, for a command that touches each record at most
/// once (see [`crate::config::load_single_pass`]).
///
/// # Errors
/// When the configuration cannot be loaded or the database cannot be opened.
pub async fn open(global: &GlobalOptions) -> anyhow::Result<Store> {
    open_config(crate::config::load_single_pass(global)?).await
}

/// What a command does with the database it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads: a file this process may not write is opened read-only
    /// ([`crate::config::for_reading`]).
    Read,
    /// Writes (or may write).
    Write,
}

/// Opens the store the global options name, which must exist: for commands that only read or
/// change what is there, so that a mistyped path is an error instead of a new, empty store.
///
/// # Errors
/// As [`open`], and when there is no database at the path.
pub async fn open_existing(global: &GlobalOptions, access: Access) -> anyhow::Result<Store> {
    let mut config = crate::config::load_single_pass(global)?;
    config.create_if_missing = false;
    if access == Access::Read {
        config = crate::config::for_reading(config);
    }
    open_config(config).await
}

/// Opens the store of a configuration.
///
/// # Errors
/// When the database cannot be opened, naming the file.
pub async fn open_config(config: Config) -> anyhow::Result<Store> {
    let location = config.location();
    Store::open(config)
        .await
        .with_context(|| format!("open database {location}"))
}

/// Closes the store after a command, then returns the command's result (or the close error
/// when the command succeeded).
///
/// # Errors
/// The command's error, else the close error.
pub async fn close<T>(store: Store, result: anyhow::Result<T>) -> anyhow::Result<T> {
    let closed = store.close().await.context("close the database");
    let value = result?;
    closed?;
    Ok(value)
}

/// The keys of a collection in order, [`PAGE_KEYS`] at a time, so that walking a whole
/// collection holds one page in memory.
pub struct KeyPages<'a> {
    store: &'a Store,
    collection: &'a str,
    /// The last key of the previous page.
    after: Option<String>,
    is_done: bool,
}

impl<'a> KeyPages<'a> {
    /// The pages of `collection`, from its first key.
    pub fn new(store: &'a Store, collection: &'a str) -> Self {
        KeyPages {
            store,
            collection,
            after: None,
            is_done: false,
        }
    }

    /// The next page of keys, or `None` after the last.
    ///
    /// # Errors
    /// When listing fails, naming the collection.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<String>>> {
        if self.is_done {
            return Ok(None);
        }
        let mut options = ListOptions::all().limit(PAGE_KEYS);
        options.start_after = self.after.take();
        let keys = self
            .store
            .list(self.collection, options)
            .await
            .with_context(|| format!("list collection {}", self.collection))?;
        self.is_done = keys.len() < PAGE_KEYS;
        self.after = keys.last().cloned();
        Ok(Some(keys).filter(|keys| !keys.is_empty()))
    }
}

/// Reads the values of `keys` in `collection`, in order, with as many parallel tasks as the
/// store has read connections. Keys deleted meanwhile are left out.
///
/// # Errors
/// The first failed read (a corrupt value, a busy database...), naming the record.
pub async fn retrieve_values(
    store: &Store,
    collection: &str,
    keys: &[String],
) -> anyhow::Result<Vec<(String, Value)>> {
    retrieve_mapped(store, collection, keys, |_, _, value: Value| Ok(value)).await
}

/// As [`retrieve_values`], reading each value as a `V` (`Box<RawValue>` for the stored text as
/// it is) and turning each `(collection, key, value)` into a `T` on the reading task, so that
/// this work runs in parallel too. Returns `(key, T)` in key order.
///
/// # Errors
/// The first failed read or `map`, naming the record.
pub async fn retrieve_mapped<V, T, F>(
    store: &Store,
    collection: &str,
    keys: &[String],
    map: F,
) -> anyhow::Result<Vec<(String, T)>>
where
    V: DeserializeOwned + Send + 'static,
    T: Send + 'static,
    F: Fn(&str, &str, V) -> anyhow::Result<T> + Clone + Send + 'static,
{
    let tasks = store.config().read_connections.clamp(1, 8);
    let chunk = keys.len().div_ceil(tasks).max(1);
    let mut handles = Vec::with_capacity(tasks);
    for part in keys.chunks(chunk) {
        let store = store.clone();
        let collection = collection.to_owned();
        let part = part.to_vec();
        let map = map.clone();
        handles.push(tokio::spawn(async move {
            let mut mapped = Vec::with_capacity(part.len());
            for key in part {
                let value = store
                    .retrieve::<V>(&collection, &key)
                    .await
                    .with_context(|| format!("read {collection}/{key}"))?;
                if let Some(value) = value {
                    let item = map(&collection, &key, value)?;
                    mapped.push((key, item));
                }
            }
            anyhow::Ok(mapped)
        }));
    }
    let mut mapped = Vec::with_capacity(keys.len());
    for handle in handles {
        mapped.extend(handle.await.context("join a read task")??);
    }
    Ok(mapped)
}
