//! The seed's approach, as the baseline: serde_json + gzip (kept only when smaller) + a content
//! hash + one autocommit `INSERT OR REPLACE` per write on rusqlite, WAL, `synchronous=FULL`;
//! reads are a `SELECT` + gunzip + decode. One connection, as the seed's pool effectively
//! serializes on one.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rusqlite::{Connection, OptionalExtension as _, params};

/// The seed's store.
pub struct SeedStore {
    conn: Connection,
}

impl SeedStore {
    /// Opens (creating) the seed's schema at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
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
    pub fn store(
        &self,
        collection: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> anyhow::Result<()> {
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
    pub fn store_batch(
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
    pub fn retrieve(
        &self,
        collection: &str,
        key: &str,
    ) -> anyhow::Result<Option<serde_json::Value>> {
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
    pub fn file_bytes(&self, path: &Path) -> anyhow::Result<u64> {
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
