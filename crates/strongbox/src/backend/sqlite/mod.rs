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

mod dictionaries;
mod maintenance;
mod reader;
mod schema;
mod snapshot;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use self::reader::ReaderPool;
use self::writer::Request;
use crate::backend::{
    AccessUpdate, BlobCursor, KeyRange, RefcountMismatch, StorageTotals, StoredRecord, WriteOp,
    WriteOutcome,
};
use crate::blob::BlobId;
use crate::config::{Config, Durability};
use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version};

/// WAL pages (16 MiB) after which a commit checkpoints them into the database file. A checkpoint
/// copies each page once however often it changed since the last: on the sample data, durable
/// concurrent writes ran at 7.7x the seed's rate with SQLite's default of 1,000 pages, 8.75x with
/// 4,000 and 8.7x with 8,000 (`strongbox bench`, one run each). The WAL file keeps its largest
/// size until maintenance truncates it.
const WAL_CHECKPOINT_PAGES: i64 = 4_000;

/// A store's SQLite database file.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    busy_timeout: Duration,
    inline_reads: bool,
    writer: Mutex<Option<WriterHandle>>,
    readers: Arc<ReaderPool>,
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
        conn.set_prepared_statement_cache_capacity(64);
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(map_err("enable the query planner stability guarantee"))?;
        schema::migrate(&mut conn, is_new)?;

        let readers = Arc::new(ReaderPool::open(
            path.clone(),
            vfs,
            config.read_connections,
            busy_timeout,
        )?);
        let (requests, receiver) = mpsc::channel();
        let max_batch_requests = config.max_batch_requests;
        let thread = std::thread::Builder::new()
            .name("strongbox-writer".into())
            .spawn(move || writer::run(conn, receiver, max_batch_requests))
            .map_err(|source| Error::Io {
                action: "start the writer thread".into(),
                source,
            })?;
        Ok(SqliteBackend {
            path,
            busy_timeout,
            inline_reads: config.inline_reads,
            writer: Mutex::new(Some(WriterHandle { requests, thread })),
            readers,
        })
    }

    /// Bytes on disk: the database file plus its WAL.
    pub async fn file_bytes(&self) -> Result<u64> {
        Ok(self.file_bytes_now())
    }

    fn file_bytes_now(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        [self.path.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// Reads waited this long in total for a free connection, in microseconds.
    pub fn connection_wait_micros(&self) -> u64 {
        self.readers.wait_micros()
    }

    fn send(&self, request: Request) -> Result<()> {
        let guard = self.writer.lock().map_err(|_| Error::Closed)?;
        let handle = guard.as_ref().ok_or(Error::Closed)?;
        handle.requests.send(request).map_err(|_| Error::Closed)
    }

    /// See `Backend::write`.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write { ops, reply })?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|error| error.busy_after(self.busy_timeout))
    }

    /// See `Backend::queue_access`.
    pub fn queue_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        self.send(Request::Access {
            updates,
            reply: None,
        })
    }

    /// See `Backend::record_access`.
    pub async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Access {
            updates,
            reply: Some(reply),
        })?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|error| error.busy_after(self.busy_timeout))
    }

    /// See `Backend::get`.
    pub async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        if self.inline_reads
            && let Some(result) = self
                .readers
                .try_read_inline(|conn| get_blocking(conn, collection, key))
        {
            return result;
        }
        let (collection, key) = (collection.to_owned(), key.to_owned());
        self.readers
            .read(move |conn| get_blocking(conn, &collection, &key))
            .await
    }

    /// See `Backend::version`.
    pub async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        let (collection, key) = (collection.to_owned(), key.to_owned());
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT version FROM records WHERE collection = ?1 AND key = ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![collection, key], |row| row.get::<_, i64>(0))
                        .optional()
                })
                .map(|version| version.map(|v| Version::new(v.max(0).unsigned_abs())))
                .map_err(map_err("read a record's version"))
            })
            .await
    }

    /// See `Backend::list`.
    pub async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                // An empty key is invalid, so "after the empty key" means from the first key.
                let start_after = range.start_after.unwrap_or_default();
                let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
                let keys = match range.prefix.filter(|prefix| !prefix.is_empty()) {
                    None => conn
                        .prepare_cached(
                            "SELECT key FROM records WHERE collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
                        )
                        .and_then(|mut statement| {
                            statement
                                .query_map(params![collection, start_after, limit], |row| row.get(0))?
                                .collect::<rusqlite::Result<Vec<String>>>()
                        }),
                    Some(prefix) => {
                        let upper = prefix_upper_bound(&prefix);
                        conn.prepare_cached(
                            "SELECT key FROM records WHERE collection = ?1 AND key >= ?2 AND key < ?3
                               AND key > ?4 ORDER BY key LIMIT ?5",
                        )
                        .and_then(|mut statement| {
                            let upper = rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(&upper));
                            statement
                                .query_map(params![collection, prefix, upper, start_after, limit], |row| row.get(0))?
                                .collect::<rusqlite::Result<Vec<String>>>()
                        })
                    }
                };
                keys.map_err(map_err("list keys"))
            })
            .await
    }

    /// See `Backend::count`.
    pub async fn count(&self, collection: &str) -> Result<u64> {
        let collection = collection.to_owned();
        self.readers
            .read(move |conn| {
                conn.prepare_cached("SELECT count(*) FROM records WHERE collection = ?1")
                    .and_then(|mut statement| {
                        statement.query_row([collection], |row| row.get::<_, i64>(0))
                    })
                    .map(|count| count.max(0).unsigned_abs())
                    .map_err(map_err("count records"))
            })
            .await
    }

    /// See `Backend::collections`.
    pub async fn collections(&self) -> Result<Vec<String>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached("SELECT DISTINCT collection FROM records ORDER BY collection")
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| row.get(0))?
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .map_err(map_err("list collections"))
            })
            .await
    }

    /// See `Backend::totals`.
    pub async fn totals(&self) -> Result<StorageTotals> {
        self.readers
            .read(|conn| {
                // One read transaction, so both queries see the same commit.
                conn.execute_batch("BEGIN").map_err(map_err("begin a read"))?;
                let totals = (|| {
                    let (records, collections, logical_bytes) = conn.query_row(
                        "SELECT count(*), count(DISTINCT collection), coalesce(sum(size), 0) FROM records",
                        [],
                        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)),
                    )?;
                    // Blobs left at zero references wait for the sweep: counted apart.
                    let (blobs, unique_bytes, stored_bytes, released_bytes) = conn.query_row(
                        "SELECT count(*) FILTER (WHERE c.refcount > 0),
                                coalesce(sum(b.raw_size) FILTER (WHERE c.refcount > 0), 0),
                                coalesce(sum(length(b.data)) FILTER (WHERE c.refcount > 0), 0),
                                coalesce(sum(length(b.data)) FILTER (WHERE coalesce(c.refcount, 0) = 0), 0)
                         FROM blobs b LEFT JOIN blob_refs c ON c.ref = b.ref",
                        [],
                        |row| {
                            Ok((
                                row.get::<_, i64>(0)?,
                                row.get::<_, i64>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, i64>(3)?,
                            ))
                        },
                    )?;
                    let unsigned = |value: i64| value.max(0).unsigned_abs();
                    Ok(StorageTotals {
                        records: unsigned(records),
                        collections: unsigned(collections),
                        blobs: unsigned(blobs),
                        logical_bytes: unsigned(logical_bytes),
                        unique_bytes: unsigned(unique_bytes),
                        stored_bytes: unsigned(stored_bytes),
                        released_bytes: unsigned(released_bytes),
                    })
                })()
                .map_err(map_err("sum up the database"));
                conn.execute_batch("COMMIT").map_err(map_err("end a read"))?;
                totals
            })
            .await
    }

    /// See `Backend::blobs_after`: in `ref` order.
    pub async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        let after = match after {
            BlobCursor::Start => 0,
            BlobCursor::Ref(blob_ref) => blob_ref,
            BlobCursor::Id(_) => {
                return Err(Error::backend(
                    "read blobs",
                    "a PostgreSQL cursor was given to a SQLite database",
                ));
            }
        };
        self.readers
            .read(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = conn
                    .prepare_cached(
                        "SELECT ref, id, data FROM blobs WHERE ref > ?1 ORDER BY ref LIMIT ?2",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![after, limit], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, Vec<u8>>(1)?,
                                    row.get(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<(i64, Vec<u8>, Vec<u8>)>>>()
                    })
                    .map_err(map_err("read blobs"))?;
                let next = rows
                    .last()
                    .map_or(BlobCursor::Ref(after), |(blob_ref, _, _)| {
                        BlobCursor::Ref(*blob_ref)
                    });
                let blobs = rows
                    .into_iter()
                    .map(|(_, id, data)| {
                        let id = BlobId::from_slice(&id).ok_or_else(|| Error::Corrupt {
                            collection: None,
                            key: None,
                            detail: format!("a blob id is {} bytes long instead of 32", id.len()),
                        })?;
                        Ok((id, data))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((blobs, next))
            })
            .await
    }

    /// See `Backend::records_of_blob`.
    pub async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        self.readers
            .read(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                conn.prepare_cached(
                    "SELECT collection, key FROM records
                     WHERE blob = (SELECT ref FROM blobs
                                   WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1)
                     ORDER BY collection, key LIMIT ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map(params![blob_id.as_bytes(), limit], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("find the records of a blob"))
            })
            .await
    }

    /// See `Backend::refcount_mismatches`.
    pub async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        self.readers
            .read(|conn| {
                let rows = conn
                    .prepare_cached(
                        "WITH counted AS (SELECT blob, count(*) AS actual FROM records GROUP BY blob)
                         SELECT b.id, coalesce(r.refcount, 0), coalesce(c.actual, 0)
                         FROM blobs b LEFT JOIN blob_refs r ON r.ref = b.ref
                              LEFT JOIN counted c ON c.blob = b.ref
                         WHERE coalesce(r.refcount, 0) != coalesce(c.actual, 0)",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| {
                                Ok((
                                    row.get::<_, Vec<u8>>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, i64>(2)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("recount blob references"))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, recorded, actual)| {
                        BlobId::from_slice(&id).map(|blob_id| RefcountMismatch {
                            blob_id,
                            recorded,
                            actual,
                        })
                    })
                    .collect())
            })
            .await
    }

    /// See `Backend::dangling_records`.
    pub async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT collection, key FROM records r
                     WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.ref = r.blob)
                     ORDER BY collection, key",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_err("find records without a blob"))
            })
            .await
    }

    /// See `Backend::integrity_check`.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        self.readers
            .read(|conn| {
                let lines = conn
                    .prepare("PRAGMA integrity_check")
                    .and_then(|mut statement| {
                        statement
                            .query_map([], |row| row.get::<_, String>(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(map_err("run the integrity check"))?;
                Ok(lines.into_iter().filter(|line| line != "ok").collect())
            })
            .await
    }

    /// See `Backend::close`.
    pub async fn close(&self) -> Result<()> {
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
}

/// Creates a new, empty store at `config.path` if nothing is there (and creation is allowed).
///
/// The database is built under a temporary name beside it (owner-only, mode 0600), with its
/// schema, closed, synced, and then hard-linked into place, which fails if another process got
/// there first (its store is then used). So a file at the path is never a half-created store,
/// and an empty or foreign file found there can be refused as what it is.
fn create_database(config: &Config) -> Result<()> {
    let path = &config.path;
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                action: format!("look for the database {}", path.display()),
                source,
            });
        }
    }
    if !config.create_if_missing {
        return Err(no_database(path));
    }
    let name = path.file_name().ok_or_else(|| {
        Error::InvalidConfig(format!("path {} does not name a file", path.display()))
    })?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".new-{}-{nanos}", std::process::id()));
    let temporary = directory.join(temporary_name);
    let built = build_new_database(&temporary).and_then(|()| {
        match std::fs::hard_link(&temporary, path) {
            Ok(()) => sync_directory(&directory),
            // Another process created the store meanwhile: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(Error::Io {
                action: format!("create the database file {}", path.display()),
                source,
            }),
        }
    });
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = temporary.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    built
}

/// Writes a new store's schema into a new file at `path` and syncs it.
fn build_new_database(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            action: format!("create the database file {}", path.display()),
            source,
        })?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err(format!("open {}", path.display())))?;
    set_new_file_layout(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_err("switch the new database to WAL mode"))?;
    schema::migrate(&mut conn, true)?;
    conn.close()
        .map_err(|(_, error)| map_err("close the new database")(error))?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::Io {
            action: format!("sync the new database {}", path.display()),
            source,
        })
}

/// Settings that only take effect in a file without tables.
fn set_new_file_layout(conn: &Connection) -> Result<()> {
    // Lets maintenance reclaim space incrementally.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(map_err("set auto_vacuum"))
}

/// Makes a new directory entry durable.
fn sync_directory(directory: &Path) -> Result<()> {
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| Error::Io {
            action: format!("sync the directory {}", directory.display()),
            source,
        })
}

fn no_database(path: &Path) -> Error {
    Error::Io {
        action: format!(
            "open the database {}: there is none (create it by writing to it, for example with \
             `strongbox put` or `strongbox import`)",
            path.display()
        ),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

/// Opens a connection through `vfs` (SQLite's default when `None`).
fn open_connection(
    path: &Path,
    flags: OpenFlags,
    vfs: Option<&str>,
) -> rusqlite::Result<Connection> {
    match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
///
/// UTF-8 never contains 0xFF, so incrementing the last byte cannot overflow; the result need
/// not be valid UTF-8, which SQLite's bytewise comparison does not mind.
fn prefix_upper_bound(prefix: &str) -> Vec<u8> {
    let mut upper = prefix.as_bytes().to_vec();
    if let Some(last) = upper.last_mut() {
        *last = last.saturating_add(1);
    }
    upper
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Turns a rusqlite error into a Strongbox error, naming the action that failed.
fn map_err(action: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let action = action.into();
    move |error| match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy { waited_ms: 0 },
        Some(ErrorCode::DiskFull) => Error::StorageFull { action },
        // A damaged page, or a file that is not a database: the store's data is damaged.
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt {
            collection: None,
            key: None,
            detail: format!("cannot {action}: {error}"),
        },
        _ => Error::backend(action, error),
    }
}

/// One record and its blob, by key.
fn get_blocking(conn: &Connection, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
    conn.prepare_cached(
        "SELECT b.id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
                r.access_count, r.last_accessed, r.seal
         FROM records r LEFT JOIN blobs b ON b.ref = r.blob
         WHERE r.collection = ?1 AND r.key = ?2",
    )
    .and_then(|mut statement| {
        statement
            .query_row(params![collection, key], |row| {
                Ok((
                    row.get::<_, Option<Vec<u8>>>(0)?,
                    row.get::<_, Option<Vec<u8>>>(1)?,
                    row.get::<_, u8>(2)?,
                    RecordMeta {
                        version: Version::new(row.get::<_, i64>(3)?.max(0).unsigned_abs()),
                        created_at_ms: row.get(4)?,
                        updated_at_ms: row.get(5)?,
                        size_bytes: row.get::<_, i64>(6)?.max(0).unsigned_abs(),
                        access_count: row.get::<_, i64>(7)?.max(0).unsigned_abs(),
                        last_accessed_ms: row.get(8)?,
                    },
                    row.get::<_, i64>(9)?,
                ))
            })
            .optional()
    })
    .map_err(map_err("read a record"))?
    .map(|(blob_id, stored, format, meta, seal)| {
        let blob_id = blob_id
            .ok_or_else(|| Error::corrupt_at(collection, key, "the record's value is missing"))?;
        let blob_id = BlobId::from_slice(&blob_id).ok_or_else(|| {
            Error::corrupt_at(collection, key, "the record's blob id is not 32 bytes")
        })?;
        Ok(StoredRecord {
            blob_id,
            stored,
            format,
            meta,
            seal,
        })
    })
    .transpose()
}
