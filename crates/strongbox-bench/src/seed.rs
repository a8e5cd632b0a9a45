//! The original BitCraps approach (the seed's `PersistentStorageManager`), as the baseline:
//! serde_json + gzip (kept only when smaller) + a content hash + one autocommit
//! `INSERT OR REPLACE` per write on rusqlite, WAL, `synchronous=FULL`, with its write-through
//! cache of the stored (gzip) bytes keyed by collection and key ([`SeedCache`]). A cold read is
//! a `SELECT` + gunzip + decode on one connection, as the original's pool effectively
//! serializes on one; a cache hit is a lookup + gunzip + decode, on 8 threads as our cache hits
//! are measured. [`run`] times its bulk load, writes, cold reads and cache hits on the dataset.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::RngExt as _;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::dataset::Dataset;
use crate::workload::{Measured, READ_TASKS, run_blocking_for, run_threads_for};

/// Figures of the original approach.
#[derive(Debug, Clone, Default)]
pub struct SeedFigures {
    /// Loading the dataset in transactions of 1,000 records.
    pub bulk_load: Measured,
    /// Single-record autocommit updates.
    pub write: Measured,
    /// Single-record reads from the database (not the cache), uniform keys.
    pub read: Measured,
    /// Single-record reads served by the cache, uniform keys, on [`READ_TASKS`] threads.
    pub read_hit: Measured,
    /// Database plus WAL after the bulk load.
    pub file_bytes: u64,
}

/// Runs the original approach's workloads on a new database at `path`, each for `duration`.
///
/// # Errors
/// When a value does not parse or a database call fails.
pub fn run(path: &Path, dataset: &Dataset, duration: Duration) -> anyhow::Result<SeedFigures> {
    let mut seed = SeedStore::open(path)?;
    let bulk_load = bulk_load(&mut seed, dataset)?;
    let file_bytes = seed.file_bytes(path)?;
    let write = run_blocking_for(duration, |mut rng| {
        let (collection, key, value) = dataset.update(&mut rng);
        let value: serde_json::Value =
            serde_json::from_str(value.get()).context("parse a value")?;
        seed.store(collection, key, &value)
    })?;
    let random_key = |rng: &mut rand::rngs::SmallRng| {
        let (collection, key, _) = &dataset.records[rng.random_range(0..dataset.records.len())];
        (collection.as_str(), key.as_str())
    };
    let read = run_blocking_for(duration, |mut rng| {
        let (collection, key) = random_key(&mut rng);
        anyhow::ensure!(seed.retrieve(collection, key)?.is_some(), "{key} vanished");
        Ok(())
    })?;
    // Every record was written through the cache by the bulk load or the updates.
    let cache = &seed.cache;
    let read_hit = run_threads_for(READ_TASKS, duration, |mut rng| {
        let (collection, key) = random_key(&mut rng);
        anyhow::ensure!(
            cache.retrieve(collection, key)?.is_some(),
            "{key} not cached"
        );
        Ok(())
    })?;
    Ok(SeedFigures {
        bulk_load,
        write,
        read,
        read_hit,
        file_bytes,
    })
}

/// The original approach's cache: the stored bytes of each record (gzip when that was
/// smaller) under `"collection:key"`, written through by every store; unbounded (the
/// original evicts by age, which a benchmark run never reaches).
#[derive(Default)]
pub struct SeedCache {
    entries: RwLock<HashMap<String, (Vec<u8>, bool)>>,
}

impl SeedCache {
    /// Puts a record's stored bytes.
    fn put(&self, collection: &str, key: &str, data: &[u8], is_compressed: bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(
                format!("{collection}:{key}"),
                (data.to_vec(), is_compressed),
            );
        }
    }

    /// A cache read, as the original's `retrieve` does it on a hit: look up, gunzip, decode.
    /// The bytes are decoded under the read lock instead of copied out, which only helps it.
    fn retrieve(&self, collection: &str, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let entries = self
            .entries
            .read()
            .map_err(|_| anyhow::anyhow!("the cache lock is poisoned"))?;
        let Some((data, is_compressed)) = entries.get(&format!("{collection}:{key}")) else {
            return Ok(None);
        };
        decode(data, *is_compressed).map(Some)
    }
}

/// Stored bytes back to a value: gunzip when compressed, then JSON.
fn decode(data: &[u8], is_compressed: bool) -> anyhow::Result<serde_json::Value> {
    if !is_compressed {
        return serde_json::from_slice(data).context("decode");
    }
    let mut decompressed = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut decompressed)
        .context("gunzip")?;
    serde_json::from_slice(&decompressed).context("decode")
}

/// Loads the whole dataset in transactions of 1,000 records; only the throughput is measured.
fn bulk_load(seed: &mut SeedStore, dataset: &Dataset) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for (collection, key, value) in &dataset.records {
        let value: serde_json::Value =
            serde_json::from_str(value.get()).context("parse a value")?;
        batch.push((collection.clone(), key.clone(), value));
        if batch.len() == 1000 {
            seed.store_batch(&batch)?;
            batch.clear();
        }
    }
    seed.store_batch(&batch)?;
    let elapsed = started.elapsed();
    Ok(Measured {
        ops: dataset.records.len() as u64,
        ops_per_s: dataset.records.len() as f64 / elapsed.as_secs_f64(),
        ..Measured::default()
    })
}

/// The original approach's store: its database and its cache.
struct SeedStore {
    conn: Connection,
    cache: SeedCache,
}

impl SeedStore {
    /// Opens (creating) the seed's schema at `path`.
    fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path).context("open the seed database")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("set WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")
            .context("set synchronous")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS storage_records (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                collection TEXT NOT NULL,
                key TEXT NOT NULL,
                data BLOB NOT NULL,
                content_hash TEXT NOT NULL,
                is_compressed BOOLEAN NOT NULL,
                created_at INTEGER NOT NULL,
                size_bytes INTEGER NOT NULL,
                access_count INTEGER NOT NULL DEFAULT 0,
                last_accessed INTEGER NOT NULL,
                UNIQUE(collection, key)
            );
            CREATE INDEX IF NOT EXISTS idx_collection_key ON storage_records(collection, key);
            CREATE INDEX IF NOT EXISTS idx_content_hash ON storage_records(content_hash);
            CREATE INDEX IF NOT EXISTS idx_created_at ON storage_records(created_at);
            CREATE INDEX IF NOT EXISTS idx_last_accessed ON storage_records(last_accessed);",
        )
        .context("create the seed schema")?;
        Ok(SeedStore {
            conn,
            cache: SeedCache::default(),
        })
    }

    /// One write, as the original does it: serialize, gzip if smaller, hash, autocommit insert,
    /// then the cache.
    fn store(&self, collection: &str, key: &str, value: &serde_json::Value) -> anyhow::Result<()> {
        let serialized = serde_json::to_vec(value).context("serialize")?;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&serialized).context("gzip")?;
        let compressed = encoder.finish().context("gzip")?;
        let (data, is_compressed) = if compressed.len() < serialized.len() {
            (compressed, true)
        } else {
            (serialized.clone(), false)
        };
        let content_hash = blake3::hash(&data).to_hex().to_string();
        let now = 0i64;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO storage_records
                 (collection, key, data, content_hash, is_compressed, created_at, size_bytes, access_count, last_accessed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    collection,
                    key,
                    data,
                    content_hash,
                    is_compressed,
                    now,
                    serialized.len() as i64,
                    0i64,
                    now
                ])
            })
            .context("insert")?;
        self.cache.put(collection, key, &data, is_compressed);
        Ok(())
    }

    /// Many writes in one transaction (used only to load the baseline quickly).
    fn store_batch(
        &mut self,
        records: &[(String, String, serde_json::Value)],
    ) -> anyhow::Result<()> {
        self.conn.execute_batch("BEGIN").context("begin")?;
        for (collection, key, value) in records {
            self.store(collection, key, value)?;
        }
        self.conn.execute_batch("COMMIT").context("commit")?;
        Ok(())
    }

    /// One read from the database, as the original does it on a cache miss: select, gunzip,
    /// decode.
    fn retrieve(&self, collection: &str, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let row: Option<(Vec<u8>, bool)> = self
            .conn
            .prepare_cached("SELECT data, is_compressed FROM storage_records WHERE collection = ?1 AND key = ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(params![collection, key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .context("select")?;
        let Some((data, is_compressed)) = row else {
            return Ok(None);
        };
        decode(&data, is_compressed).map(Some)
    }

    /// Bytes on disk after a checkpoint: database plus WAL.
    fn file_bytes(&self, path: &Path) -> anyhow::Result<u64> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .context("checkpoint")?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok([path.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum())
    }
}
