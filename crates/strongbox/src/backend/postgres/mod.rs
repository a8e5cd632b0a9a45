//! The PostgreSQL backend: the scale-out store for many application servers on one database.
//!
//! The same model as SQLite (two tables, same columns, same reference-count rules), on a
//! deadpool connection pool. Writes are one transaction each (see [`write`] for the locking);
//! reads run on pooled connections with cached prepared statements. A dedicated connection
//! listens for other servers' writes ([`notify`]) so their caches stay coherent.
//!
//! - Group commit: writes queued from many tasks commit together, one transaction and one WAL
//!   flush per group ([`group`], [`batch`], [`rows`]).
//! - Durability: PostgreSQL's own; `Durability::Process` sets `synchronous_commit = off`.
//! - Waiting: a caller waits up to `busy_timeout_ms` for a pooled connection, and each
//!   connection's `lock_timeout` is the same bound; past it the call fails with `Error::Busy`.
//! - Secrets: the URL's password never appears in errors or logs (`PostgresUrl`).
//! - Failover: with a multi-host URL and `target_session_attrs=read-write`, connections reach
//!   whichever server takes writes ([`connect`]); a lost connection or a server that cannot
//!   write is `Error::Unavailable`, retryable.
//! - TLS: with `sslmode=require` in the URL, connections use rustls and verify the server
//!   against the web's roots plus `postgres_tls_ca_file`.

//!
//! - Read replicas: with `Config::postgres_replicas`, reads go to standbys that have replayed
//!   this store's writes, else to the primary ([`replicas`]).
//!
//! Rooms: [`read`], [`replicas`], [`write`] (with [`group`], [`batch`], [`rows`] and [`refs`],
//! the reference-count deltas), [`snapshot`],
//! [`verify`], [`maintenance`], [`dictionaries`], [`feed`] (the change feed), [`notify`] (the
//! cache invalidations other servers announce), [`schema`],
//! [`connect`], [`tls`], [`convert`].

mod batch;
mod connect;
mod convert;
mod dictionaries;
mod feed;
mod group;
mod maintenance;
mod notify;
mod read;
mod refs;
mod replicas;
mod rows;
mod schema;
mod snapshot;
mod tls;
mod verify;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use self::batch::Settings;
use self::convert::{Column, map_err, unsigned};
use self::group::{GroupWriter, Shared};
use self::replicas::Replicas;
use self::tls::tls_connector;
use crate::backend::{Engine, Invalidation, ReplicaTotals};
use crate::config::{Config, PostgresUrl};
use crate::error::{Error, Result};

/// The size of the tables named in `$1` with their indexes, TOAST data and maps, in bytes.
const TABLE_BYTES: &str = "
    SELECT coalesce(sum(pg_total_relation_size(name::regclass)), 0)::BIGINT
    FROM unnest($1::TEXT[]) AS name";

/// A store's PostgreSQL database.
pub struct PostgresBackend {
    pool: Pool,
    busy_timeout: Duration,
    /// Tags this server's notifications, so it ignores its own.
    instance_id: u64,
    /// Whether writes append their changes to the change feed (`Config::change_feed`).
    is_change_feed_on: bool,
    wait_micros: Arc<AtomicU64>,
    /// The queue of writes and its group-commit tasks.
    writer: GroupWriter,
    listener: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<Invalidation>>>,
    /// Opened with `Config::read_only`: every session is read-only, writes fail with
    /// `Error::ReadOnly` before reaching the server, and read counts are not kept.
    read_only: bool,
    /// The standbys that serve reads (`Config::postgres_replicas`), if any.
    replicas: Option<Arc<Replicas>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        if let Ok(mut listener) = self.listener.lock()
            && let Some((cancel, _)) = listener.take()
        {
            cancel.cancel();
        }
    }
}

impl PostgresBackend {
    /// Connects, migrates the schema and starts the change listener.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a malformed URL or a newer schema, `Error::Unavailable` when
    /// no server can be reached (or none takes writes), `Error::Busy` when no connection comes
    /// in time.
    pub async fn open(url: &PostgresUrl, config: &Config) -> Result<Self> {
        let pg_config = connect::pg_config(url, config)?;
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let tls = tls_connector(&pg_config, config)?;
        let pool = build_pool(
            pg_config.clone(),
            config,
            config.postgres_pool_size,
            busy_timeout,
            Duration::from_secs(10),
        )?;
        let replicas = Replicas::open(config)?.map(Arc::new);
        let instance_id =
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), Instant::now());
        let wait_micros = Arc::new(AtomicU64::new(0));
        let writer = GroupWriter::start(Shared {
            pool: pool.clone(),
            busy_timeout,
            wait_micros: Arc::clone(&wait_micros),
            replicas: replicas.clone(),
            settings: Settings {
                instance_id,
                notifies: config.postgres_notify,
                is_change_feed_on: config.change_feed,
            },
        });
        let backend = PostgresBackend {
            pool,
            busy_timeout,
            instance_id,
            is_change_feed_on: config.change_feed,
            wait_micros,
            writer,
            listener: Mutex::new(None),
            changes: Mutex::new(None),
            read_only: config.read_only,
            replicas,
        };
        let mut client = backend
            .client()
            .await
            .map_err(|error| error.in_location(&url.redacted()))?;
        if config.read_only {
            schema::check_is_current(&client).await?;
        } else {
            schema::migrate(&mut client).await?;
        }
        drop(client);
        if !config.postgres_notify {
            return Ok(backend);
        }

        let (sender, receiver) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let heard = backend.replicas.as_deref().map(Replicas::unknown_counter);
        let handle = match tls {
            Some(tls) => tokio::spawn(notify::listen(
                pg_config,
                tls,
                instance_id,
                sender,
                heard,
                cancel.clone(),
            )),
            None => tokio::spawn(notify::listen(
                pg_config,
                NoTls,
                instance_id,
                sender,
                heard,
                cancel.clone(),
            )),
        };
        if let Ok(mut listener) = backend.listener.lock() {
            *listener = Some((cancel, handle));
        }
        if let Ok(mut changes) = backend.changes.lock() {
            *changes = Some(receiver);
        }
        Ok(backend)
    }

    /// A pooled connection, waiting at most the busy timeout.
    async fn client(&self) -> Result<deadpool_postgres::Client> {
        pooled(&self.pool, self.busy_timeout, &self.wait_micros).await
    }
}

/// A connection from `pool`, waiting at most `busy_timeout` (the wait is added to `wait_micros`).
///
/// # Errors
/// `Error::Busy` past the wait, `Error::Closed` once the pool is closed, `Error::Unavailable`
/// when no server can be reached.
async fn pooled(
    pool: &Pool,
    busy_timeout: Duration,
    wait_micros: &AtomicU64,
) -> Result<deadpool_postgres::Client> {
    let started = Instant::now();
    let client = pool.get().await;
    let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    wait_micros.fetch_add(waited, Ordering::Relaxed);
    client.map_err(|error| match error {
        PoolError::Timeout(_) => Error::Busy {
            waited_ms: u64::try_from(busy_timeout.as_millis()).unwrap_or(u64::MAX),
        },
        PoolError::Closed => Error::Closed,
        PoolError::Backend(error) => map_err("connect to PostgreSQL")(error),
        other => Error::backend("connect to PostgreSQL", other.to_string()),
    })
}

/// A pool of `size` connections made with `pg_config` (over TLS when it asks), waiting at most
/// `wait` for a free connection and `create` for a new one.
///
/// # Errors
/// `Error::InvalidConfig` when TLS is asked for and cannot be set up, or the pool not built.
fn build_pool(
    pg_config: tokio_postgres::Config,
    config: &Config,
    size: usize,
    wait: Duration,
    create: Duration,
) -> Result<Pool> {
    let tls = tls_connector(&pg_config, config)?;
    let manager_config = || ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(pg_config, tls, manager_config()),
        None => Manager::from_config(pg_config, NoTls, manager_config()),
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(create))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| Error::InvalidConfig(format!("cannot build the PostgreSQL pool: {error}")))
}

impl Engine for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn take_invalidations(&self) -> Option<mpsc::UnboundedReceiver<Invalidation>> {
        self.changes
            .lock()
            .ok()
            .and_then(|mut changes| changes.take())
    }

    fn connection_wait_micros(&self) -> u64 {
        self.wait_micros.load(Ordering::Relaxed)
    }

    async fn file_bytes(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(TABLE_BYTES, &[&schema::TABLES.as_slice()])
            .await
            .map_err(map_err("measure the tables"))?;
        Ok(unsigned(row.column(0)?))
    }

    async fn replica_totals(&self) -> Option<ReplicaTotals> {
        PostgresBackend::replica_totals(self).await
    }

    async fn close(&self) -> Result<()> {
        let listener = self
            .listener
            .lock()
            .ok()
            .and_then(|mut listener| listener.take());
        if let Some((cancel, handle)) = listener {
            cancel.cancel();
            let _ = handle.await;
        }
        self.pool.close();
        self.close_replicas();
        Ok(())
    }
}
