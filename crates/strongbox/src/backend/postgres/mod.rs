//! The PostgreSQL backend: the scale-out store for many application servers on one database.
//!
//! The same model as SQLite (two tables, same columns, same reference-count rules), on a
//! deadpool connection pool. Writes are one transaction each (see [`write`] for the locking);
//! reads run on pooled connections with cached prepared statements. A dedicated connection
//! listens for other servers' writes ([`notify`]) so their caches stay coherent.
//!
//! - Durability: PostgreSQL's own; `Durability::Process` sets `synchronous_commit = off`.
//! - Waiting: a caller waits up to `busy_timeout_ms` for a pooled connection, and each
//!   connection's `lock_timeout` is the same bound; past it the call fails with `Error::Busy`.
//! - Secrets: the URL's password never appears in errors or logs (`PostgresUrl`).
//! - TLS: with `sslmode=require` in the URL, connections use rustls and verify the server
//!   against the web's roots plus `postgres_tls_ca_file`.

mod dictionaries;
mod maintenance;
mod notify;
mod schema;
mod snapshot;
mod verify;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use crate::backend::{BlobCursor, Change, KeyRange, RefcountMismatch, StorageTotals, StoredRecord};
use crate::blob::BlobId;
use crate::config::{Config, Durability, PostgresUrl};
use crate::error::{Error, Result};
use crate::record::{RecordMeta, Version};

/// A store's PostgreSQL database.
pub struct PostgresBackend {
    pool: Pool,
    busy_timeout: Duration,
    /// Tags this server's notifications, so it ignores its own.
    instance_id: u64,
    /// Whether writes are announced (`pg_notify`) and a listener runs.
    notifies: bool,
    wait_micros: AtomicU64,
    listener: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
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
    /// `Error::InvalidConfig` for a malformed URL or a newer schema, `Error::Backend` when the
    /// server cannot be reached, `Error::Busy` when no connection comes in time.
    pub async fn open(url: &PostgresUrl, config: &Config) -> Result<Self> {
        let mut pg_config: tokio_postgres::Config = url.expose().parse().map_err(|error| {
            Error::InvalidConfig(format!(
                "cannot parse the PostgreSQL URL {}: {error}",
                url.redacted()
            ))
        })?;
        let synchronous_commit = match config.durability {
            Durability::Full => "on",
            Durability::Process => "off",
        };
        let options = format!(
            "{} -c lock_timeout={} -c synchronous_commit={synchronous_commit}",
            pg_config.get_options().unwrap_or_default(),
            config.busy_timeout_ms
        );
        pg_config.options(options.trim());
        pg_config.connect_timeout(Duration::from_secs(10));
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let tls = tls_connector(&pg_config, config)?;
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(pg_config.clone(), tls.clone(), manager_config()),
            None => Manager::from_config(pg_config.clone(), NoTls, manager_config()),
        };
        let pool = Pool::builder(manager)
            .max_size(config.postgres_pool_size)
            .wait_timeout(Some(busy_timeout))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| {
                Error::InvalidConfig(format!("cannot build the PostgreSQL pool: {error}"))
            })?;
        let instance_id =
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), Instant::now());
        let backend = PostgresBackend {
            pool,
            busy_timeout,
            instance_id,
            notifies: config.postgres_notify,
            wait_micros: AtomicU64::new(0),
            listener: Mutex::new(None),
            changes: Mutex::new(None),
        };
        let mut client = backend
            .client()
            .await
            .map_err(|error| error.in_location(&url.redacted()))?;
        schema::migrate(&mut client).await?;
        drop(client);
        if !config.postgres_notify {
            return Ok(backend);
        }

        let (sender, receiver) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let handle = match tls {
            Some(tls) => tokio::spawn(notify::listen(
                pg_config,
                tls,
                instance_id,
                sender,
                cancel.clone(),
            )),
            None => tokio::spawn(notify::listen(
                pg_config,
                NoTls,
                instance_id,
                sender,
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
        let started = Instant::now();
        let client = self.pool.get().await;
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wait_micros.fetch_add(waited, Ordering::Relaxed);
        client.map_err(|error| match error {
            PoolError::Timeout(_) => Error::Busy {
                waited_ms: u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX),
            },
            PoolError::Closed => Error::Closed,
            PoolError::Backend(error) => map_err("connect to PostgreSQL")(error),
            other => Error::backend("connect to PostgreSQL", other.to_string()),
        })
    }

    /// The stream of other servers' writes; `None` after the first call.
    pub fn take_changes(&self) -> Option<mpsc::UnboundedReceiver<Change>> {
        self.changes
            .lock()
            .ok()
            .and_then(|mut changes| changes.take())
    }

    /// Total time callers waited for a pooled connection, in microseconds.
    pub fn connection_wait_micros(&self) -> u64 {
        self.wait_micros.load(Ordering::Relaxed)
    }

    /// See `Backend::get`.
    pub async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT r.blob_id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
                        r.access_count, r.last_accessed, r.seal
                 FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
                 WHERE r.collection = $1 AND r.key = $2",
            )
            .await
            .map_err(map_err("prepare a record read"))?;
        let Some(row) = client
            .query_opt(&statement, &[&collection, &key])
            .await
            .map_err(map_err("read a record"))?
        else {
            return Ok(None);
        };
        let blob_id = BlobId::from_slice(row.get::<_, &[u8]>(0)).ok_or_else(|| {
            Error::corrupt_at(collection, key, "the record's blob id is not 32 bytes")
        })?;
        Ok(Some(StoredRecord {
            blob_id,
            stored: row.get::<_, Option<Vec<u8>>>(1),
            format: u8::try_from(row.get::<_, i16>(2)).unwrap_or(u8::MAX),
            meta: RecordMeta {
                version: Version::new(unsigned(row.get(3))),
                created_at_ms: row.get(4),
                updated_at_ms: row.get(5),
                size_bytes: unsigned(row.get(6)),
                access_count: unsigned(row.get(7)),
                last_accessed_ms: row.get(8),
            },
            seal: row.get(9),
        }))
    }

    /// See `Backend::version`.
    pub async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT version FROM strongbox_records WHERE collection = $1 AND key = $2",
            )
            .await
            .map_err(map_err("prepare a version read"))?;
        Ok(client
            .query_opt(&statement, &[&collection, &key])
            .await
            .map_err(map_err("read a record's version"))?
            .map(|row| Version::new(unsigned(row.get(0)))))
    }

    /// See `Backend::list`.
    pub async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        let client = self.client().await?;
        let start_after = range.start_after.unwrap_or_default();
        let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
        let prefix = range.prefix.unwrap_or_default();
        let rows = match prefix_successor(&prefix) {
            Some(upper) => {
                let statement = client
                    .prepare_cached(
                        "SELECT key FROM strongbox_records WHERE collection = $1 AND key >= $2 AND key < $3
                           AND key > $4 ORDER BY key LIMIT $5",
                    )
                    .await
                    .map_err(map_err("prepare a key listing"))?;
                client
                    .query(&statement, &[&collection, &prefix, &upper, &start_after, &limit])
                    .await
            }
            None => {
                let statement = client
                    .prepare_cached(
                        "SELECT key FROM strongbox_records WHERE collection = $1 AND key >= $2 AND key > $3
                         ORDER BY key LIMIT $4",
                    )
                    .await
                    .map_err(map_err("prepare a key listing"))?;
                client.query(&statement, &[&collection, &prefix, &start_after, &limit]).await
            }
        }
        .map_err(map_err("list keys"))?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// See `Backend::count`.
    pub async fn count(&self, collection: &str) -> Result<u64> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT count(*) FROM strongbox_records WHERE collection = $1")
            .await
            .map_err(map_err("prepare a count"))?;
        let row = client
            .query_one(&statement, &[&collection])
            .await
            .map_err(map_err("count records"))?;
        Ok(unsigned(row.get(0)))
    }

    /// See `Backend::collections`.
    pub async fn collections(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT collection FROM strongbox_records ORDER BY collection",
                &[],
            )
            .await
            .map_err(map_err("list collections"))?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// See `Backend::totals`.
    pub async fn totals(&self) -> Result<StorageTotals> {
        let mut client = self.client().await?;
        // One snapshot for both queries.
        let tx = read_snapshot(&mut client, "begin a read").await?;
        let records = tx
            .query_one(
                "SELECT count(*), count(DISTINCT collection), coalesce(sum(size), 0)::BIGINT FROM strongbox_records",
                &[],
            )
            .await
            .map_err(map_err("sum up the records"))?;
        let blobs = tx
            .query_one(
                "SELECT count(*), coalesce(sum(raw_size), 0)::BIGINT, coalesce(sum(length(data)), 0)::BIGINT
                 FROM strongbox_blobs",
                &[],
            )
            .await
            .map_err(map_err("sum up the blobs"))?;
        tx.commit().await.map_err(map_err("end a read"))?;
        Ok(StorageTotals {
            records: unsigned(records.get(0)),
            collections: unsigned(records.get(1)),
            logical_bytes: unsigned(records.get(2)),
            blobs: unsigned(blobs.get(0)),
            unique_bytes: unsigned(blobs.get(1)),
            stored_bytes: unsigned(blobs.get(2)),
            released_bytes: 0,
        })
    }

    /// See `Backend::file_bytes`: the tables with their indexes and TOAST data.
    pub async fn file_bytes(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (pg_total_relation_size('strongbox_records') + pg_total_relation_size('strongbox_blobs'))::BIGINT",
                &[],
            )
            .await
            .map_err(map_err("measure the tables"))?;
        Ok(unsigned(row.get(0)))
    }

    /// See `Backend::blobs_after`: in id order.
    pub async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        let cursor = after;
        let after = match after {
            BlobCursor::Start => Vec::new(),
            BlobCursor::Id(id) => id.as_bytes().to_vec(),
            BlobCursor::Ref(_) => {
                return Err(Error::backend(
                    "read blobs",
                    "a SQLite cursor was given to a PostgreSQL database",
                ));
            }
        };
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT id, data FROM strongbox_blobs WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(map_err("read blobs"))?;
        let blobs = rows
            .into_iter()
            .map(|row| {
                let id: &[u8] = row.get(0);
                let blob_id = BlobId::from_slice(id).ok_or_else(|| Error::Corrupt {
                    collection: None,
                    key: None,
                    detail: format!("a blob id is {} bytes long instead of 32", id.len()),
                })?;
                Ok((blob_id, row.get(1)))
            })
            .collect::<Result<Vec<_>>>()?;
        let next = blobs.last().map_or(cursor, |(id, _)| BlobCursor::Id(*id));
        Ok((blobs, next))
    }

    /// See `Backend::records_of_blob`.
    pub async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT collection, key FROM strongbox_records WHERE blob_id = $1 ORDER BY collection, key LIMIT $2",
                &[&blob_id.as_bytes().as_slice(), &limit],
            )
            .await
            .map_err(map_err("find the records of a blob"))?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// See `Backend::refcount_mismatches`.
    pub async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT b.id, b.refcount, coalesce(r.actual, 0)
                 FROM strongbox_blobs b
                 LEFT JOIN (SELECT blob_id, count(*) AS actual FROM strongbox_records GROUP BY blob_id) r
                   ON r.blob_id = b.id
                 WHERE b.refcount <> coalesce(r.actual, 0)",
                &[],
            )
            .await
            .map_err(map_err("recount blob references"))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                BlobId::from_slice(row.get::<_, &[u8]>(0)).map(|blob_id| RefcountMismatch {
                    blob_id,
                    recorded: row.get(1),
                    actual: row.get(2),
                })
            })
            .collect())
    }

    /// See `Backend::dangling_records`.
    pub async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT collection, key FROM strongbox_records r
                 WHERE NOT EXISTS (SELECT 1 FROM strongbox_blobs b WHERE b.id = r.blob_id)
                 ORDER BY collection, key",
                &[],
            )
            .await
            .map_err(map_err("find records without a blob"))?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// See `Backend::close`.
    pub async fn close(&self) -> Result<()> {
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
        Ok(())
    }
}

/// The TLS connector for a URL with `sslmode=require`: rustls, trusting the web's root
/// certificates plus `postgres_tls_ca_file`. Other modes connect in plain text (`prefer` is
/// treated as `disable`, so that a server with an unverifiable certificate is not a failure).
fn tls_connector(
    pg_config: &tokio_postgres::Config,
    config: &Config,
) -> Result<Option<MakeRustlsConnect>> {
    if pg_config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let invalid = |what: String| Error::InvalidConfig(what);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &config.postgres_tls_ca_file {
        let certificates = CertificateDer::pem_file_iter(file).map_err(|error| {
            invalid(format!(
                "cannot read postgres_tls_ca_file {}: {error}",
                file.display()
            ))
        })?;
        for certificate in certificates {
            let certificate = certificate.map_err(|error| {
                invalid(format!(
                    "cannot parse postgres_tls_ca_file {}: {error}",
                    file.display()
                ))
            })?;
            roots.add(certificate).map_err(|error| {
                invalid(format!(
                    "cannot trust a certificate of {}: {error}",
                    file.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("cannot set up TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls_config)))
}

/// A read-only REPEATABLE READ transaction: every query in it sees one snapshot.
async fn read_snapshot<'a>(
    client: &'a mut deadpool_postgres::Client,
    action: &'static str,
) -> Result<deadpool_postgres::Transaction<'a>> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(map_err(action))
}

/// The smallest string greater than every string starting with `prefix`, as valid UTF-8 (which
/// PostgreSQL text requires): the prefix with its last character incremented. `None` when
/// there is no such bound (empty prefix, or only `char::MAX`).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// PostgreSQL integers are signed; counts and versions never reach 2^63.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative count from a signed column.
fn unsigned(value: i64) -> u64 {
    value.max(0).unsigned_abs()
}

/// Turns a driver error into a Strongbox error, naming the action that failed.
fn map_err(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let action = action.into();
    move |error| match error.code() {
        Some(code) if *code == SqlState::DISK_FULL => Error::StorageFull { action },
        Some(code)
            if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED =>
        {
            Error::Busy { waited_ms: 0 }
        }
        _ => Error::backend(action, error),
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_bounds_are_valid_utf8_and_tight() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("é").as_deref(), Some("ê"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }
}
