//! The embedded SQLite backend: one writer thread, a pool of read-only connections, WAL.
//!
//! - Durability: `journal_mode=WAL`, `synchronous=FULL` by default (each commit fsyncs the WAL),
//!   `NORMAL` with `Durability::Process`.
//! - Concurrency: one writer connection on its own thread ([`writer`]) commits queued requests
//!   together; reads run on [`reader::ReaderPool`] connections in parallel and never block it.
//!   A point read runs on the caller's task when a connection is free (`Config::inline_reads`).
//! - Statements: every connection caches its prepared statements and sets SQLite's query
//!   planner stability guarantee (QPSG). Without it, once `ANALYZE` has run, the bundled
//!   SQLite (built with STAT4) re-plans a cached statement at every new binding, which cost a
//!   quarter of a cold read.
//!   Other processes may open the same file: every connection waits up to `busy_timeout_ms`
//!   for a lock, then the call fails with `Error::Busy`.
//! - Files: the database is created with mode 0600; SQLite gives its `-wal` and `-shm` files the
//!   database's mode.

//!
//! Rooms: [`files`] (creating the file, its companions, whether it is in use), [`read`],
//! [`writer`] (the group-commit thread) and [`apply`] (the write plans it executes), [`feed`]
//! (the change feed),
//! [`snapshot`], [`verify`], [`maintenance`], [`dictionaries`], [`schema`], [`convert`].

mod apply;
mod convert;
mod dictionaries;
mod feed;
mod files;
mod maintenance;
mod read;
mod reader;
mod schema;
mod snapshot;
mod verify;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::OpenFlags;

use self::convert::map_err;
pub use self::files::{COMPANION_SUFFIXES, database_files, is_in_use};
use self::files::{create_database, no_database, open_connection, set_new_file_layout};
use self::reader::ReaderPool;
use self::writer::Request;
use crate::backend::{Engine, Invalidation};
use crate::config::{Config, Durability};
use crate::error::{Error, Result};

/// WAL pages (16 MiB) after which a commit checkpoints them into the database file. A checkpoint
/// copies each page once however often it changed since the last: on the sample data, durable
/// concurrent writes ran at 7.7x the seed's rate with SQLite's default of 1,000 pages, 8.75x with
/// 4,000 and 8.7x with 8,000 (`strongbox bench`, one run each).
const WAL_CHECKPOINT_PAGES: i64 = 4_000;

/// Bytes the WAL file is cut back to whenever the writer starts it over (after a checkpoint
/// copied all of it): a reader holding an old snapshot (a backup, a long scan) stops checkpoints
/// from passing it, so the WAL grows by everything written meanwhile, and SQLite would otherwise
/// keep the file at that high-water mark until maintenance's `TRUNCATE` checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

/// A store's SQLite database file.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    busy_timeout: Duration,
    inline_reads: bool,
    /// The writer thread; `None` once closed, and always for a read-only store.
    writer: Mutex<Option<WriterHandle>>,
    readers: Arc<ReaderPool>,
    /// Opened with `Config::read_only`: no writer, and writes fail with `Error::ReadOnly`.
    read_only: bool,
}

#[derive(Debug)]
struct WriterHandle {
    requests: mpsc::Sender<Request>,
    thread: std::thread::JoinHandle<()>,
}

impl SqliteBackend {
    /// Opens or creates the database file, migrates its schema and starts the writer.
    ///
    /// # Errors
    /// `Error::Io` when the file cannot be created, `Error::Backend` when it is not a database
    /// or cannot be opened, `Error::InvalidConfig` when its schema is newer than this code.
    pub async fn open(config: &Config) -> Result<Self> {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            Self::open_blocking(&config)
                .map_err(|error| error.in_location(&config.path.display().to_string()))
        })
        .await
        .map_err(|join_error| Error::backend("open the database", join_error.to_string()))?
    }

    fn open_blocking(config: &Config) -> Result<Self> {
        if config.read_only {
            return Self::open_read_only(config);
        }
        let path = config.path.clone();
        let vfs = config.sqlite_vfs.clone();
        // Through the operating system's files, a new database is built aside and moved into
        // place whole, so whatever is found at `path` must already be a Strongbox store. A
        // custom VFS owns its files: there, a new database is created in place.
        let is_new = match vfs {
            None => {
                create_database(config)?;
                false
            }
            Some(_) => {
                let is_missing = !path.exists();
                if is_missing && !config.create_if_missing {
                    return Err(no_database(&path));
                }
                is_missing
            }
        };
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let mut conn = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI
                | if is_new {
                    OpenFlags::SQLITE_OPEN_CREATE
                } else {
                    OpenFlags::empty()
                },
            vfs.as_deref(),
        )
        .map_err(map_err(format!("open {}", path.display())))?;
        conn.busy_timeout(busy_timeout)
            .map_err(map_err("set the busy timeout"))?;
        if is_new {
            set_new_file_layout(&conn)?;
        } else {
            schema::check_is_store(&conn)?;
        }
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(map_err(format!("switch {} to WAL mode", path.display())))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::backend(
                "switch to WAL mode",
                format!("the database stayed in {journal_mode} mode"),
            ));
        }
        let synchronous = match config.durability {
            Durability::Full => "FULL",
            Durability::Process => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(map_err("set synchronous"))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(map_err("set the WAL checkpoint size"))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(map_err("set the WAL size limit"))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(map_err("enable the query planner stability guarantee"))?;
        schema::migrate(&mut conn, is_new)?;

        let (requests, receiver) = mpsc::channel();
        let max_batch_requests = config.max_batch_requests;
        let change_feed = config.change_feed;
        let thread = std::thread::Builder::new()
            .name("strongbox-writer".into())
            .spawn(move || {
                feed::record_changes_on_this_thread(change_feed);
                writer::run(conn, receiver, max_batch_requests);
            })
            .map_err(|source| Error::Io {
                action: "start the writer thread".into(),
                source,
            })?;
        Self::with_readers(config, Some(WriterHandle { requests, thread }))
    }

    /// The backend over the file at `config.path`, with its pool of read connections and the
    /// writer (`None`: a read-only store).
    fn with_readers(config: &Config, writer: Option<WriterHandle>) -> Result<Self> {
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let readers = ReaderPool::open(
            config.path.clone(),
            config.sqlite_vfs.clone(),
            config.read_connections,
            busy_timeout,
        )?;
        Ok(SqliteBackend {
            path: config.path.clone(),
            busy_timeout,
            inline_reads: config.inline_reads,
            read_only: writer.is_none(),
            writer: Mutex::new(writer),
            readers: Arc::new(readers),
        })
    }

    /// Opens an existing store for reading only: no writer thread, no schema migration, and
    /// nothing written to the file (its journal mode and layout are left as they are).
    fn open_read_only(config: &Config) -> Result<Self> {
        let path = config.path.clone();
        if !path.exists() {
            return Err(no_database(&path));
        }
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let probe = reader::open_reader(&path, config.sqlite_vfs.as_deref(), busy_timeout)?;
        schema::check_is_current(&probe)?;
        drop(probe);
        Self::with_readers(config, None)
    }

    fn send(&self, request: Request) -> Result<()> {
        if self.read_only {
            let action = match request {
                Request::Write { .. } => "write",
                Request::Access { .. } => "record read counts",
                Request::Exclusive(_) => "run maintenance",
            };
            return Err(Error::ReadOnly {
                action: action.into(),
            });
        }
        let guard = self.writer.lock().map_err(|_| Error::Closed)?;
        let handle = guard.as_ref().ok_or(Error::Closed)?;
        handle.requests.send(request).map_err(|_| Error::Closed)
    }
}

impl Engine for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn file_bytes(&self) -> Result<u64> {
        // The database file and its WAL (the `-shm` index is rebuilt from them).
        let [database, wal, ..] = database_files(&self.path);
        Ok([database, wal]
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum())
    }

    fn connection_wait_micros(&self) -> u64 {
        self.readers.wait_micros()
    }

    async fn close(&self) -> Result<()> {
        let handle = self.writer.lock().map_err(|_| Error::Closed)?.take();
        self.readers.close();
        if let Some(WriterHandle { requests, thread }) = handle {
            // Dropping the last sender ends the writer once the queue is drained.
            drop(requests);
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|join_error| Error::backend("stop the writer", join_error.to_string()))?
                .map_err(|_| Error::backend("stop the writer", "the writer thread panicked"))?;
        }
        Ok(())
    }

    fn take_invalidations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Invalidation>> {
        None
    }
}
