//! A small pool of read-only connections, each used on a blocking thread.
//!
//! In WAL mode readers never block the writer and see the last committed state. A caller
//! waits for a free connection at most `busy_timeout_ms`, then gets `Error::Busy`; the pool never
//! panics when empty. A connection lost (its thread panicked) is replaced by a new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::convert::map_err;
use super::files::open_connection;
use crate::error::{Error, Result};

/// Read-only connections to one database file.
#[derive(Debug)]
pub struct ReaderPool {
    path: PathBuf,
    vfs: Option<String>,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    wait_micros: AtomicU64,
}

impl ReaderPool {
    /// Opens `size` read-only connections.
    pub fn open(
        path: PathBuf,
        vfs: Option<String>,
        size: usize,
        busy_timeout: Duration,
    ) -> Result<Self> {
        let idle = (0..size)
            .map(|_| open_reader(&path, vfs.as_deref(), busy_timeout))
            .collect::<Result<Vec<_>>>()?;
        Ok(ReaderPool {
            path,
            vfs,
            busy_timeout,
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            wait_micros: AtomicU64::new(0),
        })
    }

    /// Runs `query` on a free connection, on a blocking thread.
    ///
    /// # Errors
    /// `Error::Busy` when no connection is free within the busy timeout, `Error::Closed` after
    /// [`ReaderPool::close`], or the query's error.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call returns its connection when the query finishes.
    pub async fn read<T, F>(self: &Arc<Self>, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let started = Instant::now();
        let acquired = tokio::time::timeout(self.busy_timeout, self.permits.acquire()).await;
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wait_micros.fetch_add(waited, Ordering::Relaxed);
        let permit = match acquired {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(Error::Closed),
            Err(_elapsed) => {
                return Err(Error::Busy {
                    waited_ms: u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
        };
        // The permit is given back when the connection is, inside the blocking task.
        permit.forget();
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let result = pool.take().and_then(|conn| {
                let result = query(&conn);
                pool.give_back(conn);
                result
            });
            pool.permits.add_permits(1);
            result
        })
        .await
        .map_err(|join_error| Error::backend("run a read query", join_error.to_string()))?
        .map_err(|error| error.busy_after(self.busy_timeout))
    }

    /// Runs `query` on the calling thread if a connection is free right now (`None` if not).
    ///
    /// For point reads: a query of some microseconds costs less than the two thread handoffs of
    /// [`ReaderPool::read`]. Blocks the caller for the length of the query.
    pub fn try_read_inline<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        let permit = self.permits.try_acquire().ok()?;
        let result = self.take().and_then(|conn| {
            let result = query(&conn);
            self.give_back(conn);
            result
        });
        // The permit is dropped (given back) here, also if `query` panicked.
        drop(permit);
        Some(result.map_err(|error| error.busy_after(self.busy_timeout)))
    }

    /// Total time reads waited for a free connection, in microseconds.
    pub fn wait_micros(&self) -> u64 {
        self.wait_micros.load(Ordering::Relaxed)
    }

    /// Refuses new reads; reads in progress finish.
    ///
    /// Idle connections close now, busy ones when their read ends, so that the writer is the
    /// last connection to close and SQLite can checkpoint and remove the WAL.
    pub fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn take(&self) -> Result<Connection> {
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match conn {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path, self.vfs.as_deref(), self.busy_timeout),
        }
    }

    fn give_back(&self, conn: Connection) {
        if self.permits.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

/// A read-only connection to the database.
pub(super) fn open_reader(
    path: &Path,
    vfs: Option<&str>,
    busy_timeout: Duration,
) -> Result<Connection> {
    let conn = open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
        vfs,
    )
    .map_err(map_err(format!("open {} for reading", path.display())))?;
    conn.busy_timeout(busy_timeout)
        .map_err(map_err("set the busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(32);
    // The bundled SQLite has STAT4: once ANALYZE ran, the planner looks at bound values and
    // expires a cached statement at every rebind, so each read would re-parse its SELECT.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(map_err("enable the query planner stability guarantee"))?;
    Ok(conn)
}
