//! Read replicas: the standbys (`Config::postgres_replicas`) that serve this store's reads, and
//! the read-your-writes rule that decides when one may.
//!
//! After each write committed through this store, the write's connection asks the primary for
//! `pg_current_wal_insert_lsn()` ([`Replicas::after_commit`]): the end of the WAL
//! inserted so far, so at or past the end of the commit record, whatever `synchronous_commit`
//! says (`pg_current_wal_lsn()`, the position written out, lags the commit record under
//! `synchronous_commit = off`; a position read inside the transaction, before `COMMIT`, lies
//! before it). The store keeps the highest such position. A standby serves a read only once
//! its `pg_last_wal_replay_lsn()` (the end of the last record it applied; a transaction is
//! visible to a standby's new snapshots once its commit record is applied) has reached it.
//! Each standby's last position seen is cached, so a standby that was already past it serves
//! the read without asking; else it is polled every millisecond for up to
//! `Config::replica_wait_ms`, and then the read goes to the primary.
//!
//! Other servers' commits: when the change listener hears of one (and before the cache drops
//! the key), it counts a commit of unknown position; the next standby read first reads the
//! primary's position, past that commit, and waits for it. So a read after an invalidation
//! never fills the cache from a standby that lacks the write, and a standby read is never older
//! than what this store's cache has heard of.
//!
//! **Invariant:** a read through this store never sees a state older than a write this store
//! committed, and never fails because of a standby: a standby that is behind, unreachable, no
//! longer in recovery or failing the query leaves the read to the primary (a fallback, counted),
//! and one that failed to connect is skipped for [`BACKOFF`]. With no standby configured no
//! query is added to any path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Client, Pool, PoolError, TimeoutType};

use super::PostgresBackend;
use super::convert::{Column, map_err, unsigned};
use crate::backend::ReplicaTotals;
use crate::config::{Config, PostgresUrl};
use crate::error::{Error, Result};

/// How long a standby that failed is left alone before it is tried again.
pub(super) const BACKOFF: Duration = Duration::from_secs(2);

/// The most connections in each standby's pool (fewer when `postgres_pool_size` is smaller):
/// reads are spread over the standbys, and the primary keeps the store's main pool.
const STANDBY_POOL_SIZE: usize = 8;

/// How long a standby may take to connect or hand out a connection, unless its URL says
/// `connect_timeout`: past it the read goes to the primary.
const STANDBY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `stats` waits for a standby's position before leaving it out of the lag.
const LAG_TIMEOUT: Duration = Duration::from_secs(1);

/// The position a standby has replayed up to, in bytes (`NULL` when it is not in recovery).
const REPLAY_LSN: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::BIGINT";

/// The end of the WAL inserted on the primary, in bytes.
const INSERT_LSN: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::BIGINT";

/// One standby: its pool and what this store last learned of it.
struct Standby {
    pool: Pool,
    /// The URL without its password, for logs.
    name: String,
    /// The highest replay position seen on it (0 after a failure: a restarted standby may
    /// open for reads at an older position than it had replayed before).
    replayed: AtomicU64,
    /// Until when (milliseconds since `Replicas::epoch`) it is skipped after a failure.
    skipped_until_ms: AtomicU64,
}

/// The standbys of a store, and its position in the primary's WAL.
pub(super) struct Replicas {
    standbys: Vec<Standby>,
    /// Where the round robin starts next.
    next: AtomicUsize,
    /// The highest WAL position of a commit made through this store, in bytes.
    committed: AtomicU64,
    /// Commits whose position is unknown: this store's whose position could not be read (the
    /// connection broke just after `COMMIT`), and other servers' heard of (`notify`); the
    /// next standby read first reads the primary's position, which covers them.
    unknown: Arc<AtomicU64>,
    wait: Duration,
    epoch: Instant,
    reads: AtomicU64,
    fallbacks: AtomicU64,
}

/// A standby connection lent to one read.
pub(super) struct Lease<'a> {
    /// The standby's session.
    pub(super) client: Client,
    standby: &'a Standby,
}

impl Replicas {
    /// The standbys of `config`, each with its own small pool of read-only sessions; `None`
    /// when there are none. Nothing connects yet.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a URL the driver cannot parse.
    pub(super) fn open(config: &Config) -> Result<Option<Self>> {
        if config.postgres_replicas.is_empty() {
            return Ok(None);
        }
        // A standby's sessions are read-only whatever the store is.
        let standby_config = config.clone().with_read_only(true);
        let mut standbys = Vec::with_capacity(config.postgres_replicas.len());
        for url in &config.postgres_replicas {
            let mut pg_config = super::connect::pg_config(url, &standby_config)?;
            if !url.expose().contains("connect_timeout") {
                pg_config.connect_timeout(STANDBY_CONNECT_TIMEOUT);
            }
            let pool = super::build_pool(
                pg_config,
                &standby_config,
                STANDBY_POOL_SIZE.min(config.postgres_pool_size),
                STANDBY_CONNECT_TIMEOUT,
                STANDBY_CONNECT_TIMEOUT,
            )?;
            standbys.push(Standby {
                pool,
                name: PostgresUrl::redacted(url),
                replayed: AtomicU64::new(0),
                skipped_until_ms: AtomicU64::new(0),
            });
        }
        Ok(Some(Replicas {
            standbys,
            next: AtomicUsize::new(0),
            committed: AtomicU64::new(0),
            unknown: Arc::new(AtomicU64::new(0)),
            wait: config.replica_wait(),
            epoch: Instant::now(),
            reads: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }))
    }

    /// The count of commits whose position is unknown, for the change listener to raise when
    /// it hears of other servers' commits.
    pub(super) fn unknown_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.unknown)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Leaves a standby alone for [`BACKOFF`] and forgets its position.
    fn skip(&self, standby: &Standby, error: &dyn std::fmt::Display) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(BACKOFF.as_millis()).unwrap_or(u64::MAX));
        standby.skipped_until_ms.store(until, Ordering::Relaxed);
        standby.replayed.store(0, Ordering::Relaxed);
        tracing::warn!(standby = %standby.name, %error, "standby unavailable; reading from the primary");
    }

    fn close(&self) {
        for standby in &self.standbys {
            standby.pool.close();
        }
    }
}

/// The replay position of a standby, or `None` when it is not in recovery (promoted).
async fn replay_lsn(client: &Client) -> Result<Option<u64>> {
    let statement = client
        .prepare_cached(REPLAY_LSN)
        .await
        .map_err(map_err("prepare a read of a standby's position"))?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(map_err("read a standby's position"))?;
    Ok(row.column::<Option<i64>>(0)?.map(unsigned))
}

/// Polls a standby's replay position until it reaches `wanted` (`true`) or the deadline
/// passes (`false`).
async fn wait_for(
    standby: &Standby,
    client: &Client,
    wanted: u64,
    deadline: Instant,
) -> Result<bool> {
    loop {
        let Some(replayed) = replay_lsn(client).await? else {
            return Err(Error::backend(
                "read from a standby",
                "the server is not in recovery (was it promoted?)",
            ));
        };
        standby.replayed.fetch_max(replayed, Ordering::Relaxed);
        if replayed >= wanted {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Replicas {
    /// Records where a write just committed on `client` ends in the WAL, so that this store's
    /// later reads from a standby wait for it. Call it right after a successful `COMMIT`, on
    /// the same connection (the group commit does: `super::group`).
    pub(super) async fn after_commit(&self, client: &Client) {
        let position = match client.prepare_cached(INSERT_LSN).await {
            Ok(statement) => client.query_one(&statement, &[]).await.ok(),
            Err(_) => None,
        };
        match position.map(|row| row.column::<i64>(0)) {
            Some(Ok(lsn)) => {
                self.committed.fetch_max(unsigned(lsn), Ordering::AcqRel);
            }
            _ => {
                self.unknown.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl PostgresBackend {
    /// After commits whose position is unknown: the primary's current position, read now,
    /// covers them. `false` when it cannot be read (the read then goes to the primary).
    async fn settle_unknown(&self, replicas: &Replicas) -> bool {
        let unknown = replicas.unknown.load(Ordering::Acquire);
        if unknown == 0 {
            return true;
        }
        let Ok(client) = self.client().await else {
            return false;
        };
        let Ok(Ok(lsn)) = client
            .query_one(INSERT_LSN, &[])
            .await
            .map(|row| row.column::<i64>(0))
        else {
            return false;
        };
        replicas
            .committed
            .fetch_max(unsigned(lsn), Ordering::AcqRel);
        // A commit that failed to read its position after `unknown` was loaded stays unknown.
        replicas
            .unknown
            .compare_exchange(unknown, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A standby session that has replayed every commit made through this store, waiting up
    /// to `replica_wait_ms` for one to catch up; `None` when there is no standby (the read
    /// goes to the primary) or none qualifies (the same, counted as a fallback).
    pub(super) async fn standby(&self) -> Option<Lease<'_>> {
        let replicas = self.replicas.as_ref()?;
        let lease = self.find_standby(replicas).await;
        if lease.is_none() {
            replicas.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        lease
    }

    async fn find_standby<'a>(&self, replicas: &'a Replicas) -> Option<Lease<'a>> {
        if !self.settle_unknown(replicas).await {
            return None;
        }
        let wanted = replicas.committed.load(Ordering::Acquire);
        let deadline = Instant::now() + replicas.wait;
        let count = replicas.standbys.len();
        let first = replicas.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..count {
            let standby = replicas.standbys.get(first.wrapping_add(offset) % count)?;
            if standby.skipped_until_ms.load(Ordering::Relaxed) > replicas.now_ms() {
                continue;
            }
            let client = match standby.pool.get().await {
                Ok(client) => client,
                // Every connection busy: the standby is fine, the read goes elsewhere.
                Err(PoolError::Timeout(TimeoutType::Wait)) => continue,
                Err(error) => {
                    replicas.skip(standby, &error);
                    continue;
                }
            };
            if standby.replayed.load(Ordering::Relaxed) >= wanted {
                return Some(Lease { client, standby });
            }
            match wait_for(standby, &client, wanted, deadline).await {
                Ok(true) => return Some(Lease { client, standby }),
                Ok(false) => {}
                Err(error) => replicas.skip(standby, &error),
            }
        }
        None
    }

    /// Counts a read a standby served.
    pub(super) fn served_by_standby(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.reads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A read on a standby failed: the read goes to the primary, counted as a fallback, and a
    /// standby that is gone is skipped for a while.
    pub(super) fn standby_failed(&self, lease: &Lease<'_>, error: &Error) {
        let Some(replicas) = &self.replicas else {
            return;
        };
        replicas.fallbacks.fetch_add(1, Ordering::Relaxed);
        if matches!(error, Error::Unavailable { .. }) || lease.client.is_closed() {
            replicas.skip(lease.standby, error);
        } else {
            tracing::debug!(standby = %lease.standby.name, %error, "a standby read failed; reading from the primary");
        }
    }

    /// What the standbys served, and how far the furthest behind is from the primary now
    /// (`None` when no standby is configured).
    pub(super) async fn replica_totals(&self) -> Option<ReplicaTotals> {
        let replicas = self.replicas.as_ref()?;
        let primary = match self.client().await {
            Ok(client) => client.query_one(INSERT_LSN, &[]).await.ok(),
            Err(_) => None,
        }
        .and_then(|row| row.column::<i64>(0).ok())
        .map(unsigned);
        let mut lag_bytes = None;
        let mut healthy = 0;
        for standby in &replicas.standbys {
            let position = tokio::time::timeout(LAG_TIMEOUT, async {
                let client = standby.pool.get().await.ok()?;
                replay_lsn(&client).await.ok().flatten()
            })
            .await
            .ok()
            .flatten();
            if let Some(replayed) = position {
                healthy += 1;
                if let Some(primary) = primary {
                    let lag = primary.saturating_sub(replayed);
                    lag_bytes = Some(lag_bytes.map_or(lag, |most: u64| most.max(lag)));
                }
            }
        }
        Some(ReplicaTotals {
            standbys: replicas.standbys.len() as u64,
            healthy,
            lag_bytes,
            reads: replicas.reads.load(Ordering::Relaxed),
            fallbacks: replicas.fallbacks.load(Ordering::Relaxed),
        })
    }

    /// Closes the standbys' pools.
    pub(super) fn close_replicas(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.close();
        }
    }
}

/// Reads on a standby when one qualifies ([`PostgresBackend::standby`]), else, or when the
/// standby fails, on the primary. `$client` is a `&mut deadpool_postgres::Client` in `$read`,
/// which is evaluated once or twice.
macro_rules! routed {
    ($backend:expr, $client:ident => $read:expr) => {{
        let backend = $backend;
        if let Some(mut lease) = backend.standby().await {
            let result = {
                let $client = &mut lease.client;
                $read
            };
            match result {
                Ok(found) => {
                    backend.served_by_standby();
                    return Ok(found);
                }
                Err(error) => backend.standby_failed(&lease, &error),
            }
        }
        let mut primary = backend.client().await?;
        let $client = &mut primary;
        $read
    }};
}

pub(super) use routed;
