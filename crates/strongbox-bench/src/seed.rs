//! The seed's approach, as the baseline: serde_json + gzip (kept only when smaller) + a content
//! hash + one autocommit `INSERT OR REPLACE` per write on rusqlite, WAL, `synchronous=FULL`;
//! reads are a `SELECT` + gunzip + decode. One connection, as the seed's pool effectively
//! serializes on one. [`run`] times its bulk load, writes and reads on the dataset.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::RngExt as _;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::dataset::Dataset;
use crate::workload::{Measured, run_blocking_for};

/// Figures of the seed's approach.
#[derive(Debug, Clone, Default)]
pub struct SeedFigures {
    /// Loading the dataset in transactions of 1,000 records.
    pub bulk_load: Measured,
    /// Single-record autocommit updates.
    pub write: Measured,
    /// Single-record reads, uniform keys.
    pub read: Measured,
    /// Database plus WAL after the bulk load.
    pub file_bytes: u64,
}

/// Runs the seed's workloads on a new database at `path`, each for `duration`.
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
    let read = run_blocking_for(duration, |mut rng| {
        let (collection, key, _) = &dataset.records[rng.random_range(0..dataset.records.len())];
        anyhow::ensure!(seed.retrieve(collection, key)?.is_some(), "{key} vanished");
        Ok(())
    })?;
    Ok(SeedFigures {
        bulk_load,
        write,
        read,
        file_bytes,
    })
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

/// The seed's store.
struct SeedStore {
    conn: Connection,
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
        Ok(SeedStore { conn })
    }

    /// One write, as the seed does it: serialize, gzip if smaller, hash, autocommit insert.
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

    /// One read, as the seed does it: select, gunzip, decode.
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
        let bytes = if is_compressed {
            let mut decompressed = Vec::new();
            GzDecoder::new(data.as_slice())
                .read_to_end(&mut decompressed)
                .context("gunzip")?;
            decompressed
        } else {
            data
        };
        Ok(Some(serde_json::from_slice(&bytes).context("decode")?))
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
