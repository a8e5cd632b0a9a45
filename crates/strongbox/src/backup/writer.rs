//! [`ManifestWriter`]: writing a manifest (see [`super::manifest`] and
//! `docs/backup-format.md`) to a temporary file, hashing as it goes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::io_error;
use super::manifest::{Header, RecordLine, Trailer};
use crate::backend::SnapshotRecord;
use crate::error::{Error, Result};

/// The zstd level of manifests: they are mostly hex digits and repeated field names.
const ZSTD_LEVEL: i32 = 3;

/// Writes a manifest to a temporary file, hashing as it goes.
pub struct ManifestWriter {
    path: PathBuf,
    encoder: zstd::Encoder<'static, BufWriter<File>>,
    hasher: blake3::Hasher,
    line: Vec<u8>,
}

impl ManifestWriter {
    /// Creates the file at `path` and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error(format!("create {}", path.display())))?;
        let encoder = zstd::Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
            .map_err(io_error(format!("start compressing {}", path.display())))?;
        let mut writer = ManifestWriter {
            path: path.to_owned(),
            encoder,
            hasher: blake3::Hasher::new(),
            line: Vec::with_capacity(512),
        };
        writer.write_line(header, true)?;
        Ok(writer)
    }

    /// Appends a record line.
    pub fn append(&mut self, record: &SnapshotRecord) -> Result<()> {
        let blob = record.blob_id.to_hex();
        let meta = &record.meta;
        self.write_line(
            &RecordLine::<&str> {
                collection: &record.collection,
                key: &record.key,
                blob: &blob,
                format: record.format,
                version: meta.version.get(),
                created_at_ms: meta.created_at_ms,
                updated_at_ms: meta.updated_at_ms,
                size_bytes: meta.size_bytes,
                access_count: meta.access_count,
                last_accessed_ms: meta.last_accessed_ms,
                expires_at_ms: meta.expires_at_ms,
            },
            true,
        )
    }

    /// Writes the end line, finishes the frame and syncs the file; returns its size.
    pub fn finish(mut self, records: u64, blobs: u64, logical_bytes: u64) -> Result<u64> {
        #[derive(serde::Serialize)]
        struct End {
            end: Trailer,
        }
        let checksum = self.hasher.finalize().to_hex().to_string();
        let end = End {
            end: Trailer {
                records,
                blobs,
                logical_bytes,
                checksum,
            },
        };
        self.write_line(&end, false)?;
        let action = || format!("write {}", self.path.display());
        let file = self
            .encoder
            .finish()
            .and_then(|buffered| buffered.into_inner().map_err(|error| error.into_error()))
            .map_err(io_error(action()))?;
        file.sync_all().map_err(io_error(action()))?;
        let size = file.metadata().map_err(io_error(action()))?.len();
        Ok(size)
    }

    fn write_line<T: serde::Serialize>(&mut self, value: &T, is_hashed: bool) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|error| Error::backend("encode a manifest line", error))?;
        self.line.push(b'\n');
        if is_hashed {
            self.hasher.update(&self.line);
        }
        self.encoder
            .write_all(&self.line)
            .map_err(io_error(format!("write {}", self.path.display())))
    }
}
