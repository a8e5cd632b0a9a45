//! [`ManifestWriter`]: writing a manifest (see [`super::manifest`] and
//! `docs/backup-format.md`): record lines go into content-addressed chunks stored in packs,
//! and the manifest file lists the chunks, hashing its lines as it goes.
//!
//! **Chunk boundaries depend on keys only:** a chunk ends after a record whose (collection,
//! key) hashes to a multiple of [`CHUNK_AVERAGE_RECORDS`] (with bounds on its length). So a
//! changed value changes only its own chunk, and an inserted or deleted key only the chunk it
//! falls in: every other chunk keeps its bytes, its id, and costs the next backup nothing.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::chunk::ChunkLine;
use super::differential::BaseCursor;
use super::files::io_error;
use super::index::EntryKind;
use super::manifest::{Entry, Header, MANIFEST_VERSION, RecordLine, RemovedLine, Trailer};
use super::pack::PackWriter;
use super::repository::Repository;
use super::sealed::ManifestSink;
use crate::backend::SnapshotRecord;
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// The zstd level of manifests and chunks: they are mostly hex digits and repeated names.
const ZSTD_LEVEL: i32 = 3;

/// The average number of records in a chunk: small, because a changed record costs the next
/// backup its whole chunk, and a chunk's id in the manifest costs about 40 bytes.
pub(crate) const CHUNK_AVERAGE_RECORDS: u64 = 8;

/// The fewest records a chunk ends at by its key (the last chunk may have fewer).
const CHUNK_MIN_RECORDS: u64 = 2;

/// The most records in a chunk.
const CHUNK_MAX_RECORDS: u64 = 256;

/// A chunk ends once it holds this many bytes of lines.
const CHUNK_MAX_BYTES: usize = 256 << 10;

/// What a finished manifest cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ManifestBytes {
    /// The manifest file's size.
    pub(crate) file: u64,
    /// The new chunks' stored size (written into packs).
    pub(crate) chunks: u64,
}

/// Writes a manifest to a temporary file and its chunks into packs.
pub struct ManifestWriter {
    path: PathBuf,
    encoder: zstd::Encoder<'static, ManifestSink>,
    hasher: blake3::Hasher,
    line: Vec<u8>,
    chunk: Vec<u8>,
    chunk_records: u64,
    known_chunks: HashSet<BlobId>,
    chunk_bytes: u64,
    /// A differential manifest's base, walked beside the records appended.
    base: Option<BaseCursor>,
    /// The record and removal lines written.
    lines: u64,
    /// Whether the manifest is differential (it had a base).
    is_differential: bool,
}

impl ManifestWriter {
    /// Creates the file at `path` and writes the header; chunks in `known_chunks` are in the
    /// repository already and are not written again. With a `base` (the backup the header
    /// names as its base), the manifest is differential: only records that differ from the
    /// base's get a line, and the base's records the snapshot lacks a removal line. In an
    /// encrypted repository the file is written sealed, when the manifest is finished.
    pub(crate) fn create(
        repository: &Repository,
        path: &Path,
        header: &Header,
        known_chunks: HashSet<BlobId>,
        base: Option<BaseCursor>,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error(format!("create {}", path.display())))?;
        let encoder = zstd::Encoder::new(ManifestSink::new(repository, file), ZSTD_LEVEL)
            .map_err(io_error(format!("start compressing {}", path.display())))?;
        let mut writer = ManifestWriter {
            path: path.to_owned(),
            encoder,
            hasher: blake3::Hasher::new(),
            line: Vec::with_capacity(512),
            chunk: Vec::with_capacity(16 << 10),
            chunk_records: 0,
            known_chunks,
            chunk_bytes: 0,
            is_differential: base.is_some(),
            base,
            lines: 0,
        };
        let mut header = header.clone();
        if writer.base.is_some() {
            header.version = MANIFEST_VERSION;
        }
        writer.write_line(&header, true)?;
        Ok(writer)
    }

    /// Appends a record (in key order): a record line in the current chunk, unless the
    /// manifest is differential and its base holds the record unchanged.
    pub(crate) fn append(&mut self, record: &SnapshotRecord, packs: &mut PackWriter) -> Result<()> {
        if let Some(mut base) = self.base.take() {
            let unchanged = base.advance_to(record, |removed| self.remove(removed, packs));
            self.base = Some(base);
            if unchanged? {
                return Ok(());
            }
        }
        let blob = record.blob_id.to_hex();
        let meta = &record.meta;
        let line = RecordLine::<&str> {
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
        };
        self.push_line(&line, &record.collection, &record.key, packs)
    }

    /// Appends a removal line for a record of the base.
    fn remove(&mut self, removed: &Entry, packs: &mut PackWriter) -> Result<()> {
        let line = RemovedLine::<&str> {
            collection: &removed.collection,
            key: &removed.key,
            removed: true,
        };
        self.push_line(&line, &removed.collection, &removed.key, packs)
    }

    /// Appends a line to the current chunk, and ends the chunk where its key says.
    fn push_line<T: serde::Serialize>(
        &mut self,
        line: &T,
        collection: &str,
        key: &str,
        packs: &mut PackWriter,
    ) -> Result<()> {
        serde_json::to_writer(&mut self.chunk, line)
            .map_err(|error| Error::backend("encode a manifest line", error))?;
        self.chunk.push(b'\n');
        self.chunk_records += 1;
        self.lines += 1;
        if self.chunk_records >= CHUNK_MAX_RECORDS
            || self.chunk.len() >= CHUNK_MAX_BYTES
            || (self.chunk_records >= CHUNK_MIN_RECORDS && is_boundary(collection, key))
        {
            self.end_chunk(packs)?;
        }
        Ok(())
    }

    /// Stores the current chunk (unless the repository has it) and lists it in the manifest.
    fn end_chunk(&mut self, packs: &mut PackWriter) -> Result<()> {
        if self.chunk_records == 0 {
            return Ok(());
        }
        let id = BlobId::of(&self.chunk);
        if self.known_chunks.insert(id) {
            let stored = zstd::encode_all(self.chunk.as_slice(), ZSTD_LEVEL)
                .map_err(io_error("compress a manifest chunk"))?;
            packs.add(EntryKind::Chunk, id, &stored)?;
            self.chunk_bytes += stored.len() as u64;
        }
        let line = ChunkLine {
            chunk: id.to_hex(),
            records: self.chunk_records,
        };
        self.write_line(&line, true)?;
        self.chunk.clear();
        self.chunk_records = 0;
        Ok(())
    }

    /// Ends the last chunk, writes the end line, finishes the frame and syncs the file.
    pub(crate) fn finish(
        mut self,
        packs: &mut PackWriter,
        records: u64,
        blobs: u64,
        logical_bytes: u64,
    ) -> Result<ManifestBytes> {
        #[derive(serde::Serialize)]
        struct End {
            end: Trailer,
        }
        if let Some(base) = self.base.take() {
            base.finish(|removed| self.remove(removed, packs))?;
        }
        self.end_chunk(packs)?;
        let checksum = self.hasher.finalize().to_hex().to_string();
        let end = End {
            end: Trailer {
                records,
                blobs,
                logical_bytes,
                checksum,
                lines: self.is_differential.then_some(self.lines),
            },
        };
        self.write_line(&end, false)?;
        let action = || format!("write {}", self.path.display());
        let file = self
            .encoder
            .finish()
            .and_then(ManifestSink::finish)
            .map_err(io_error(action()))?;
        file.sync_all().map_err(io_error(action()))?;
        let size = file.metadata().map_err(io_error(action()))?.len();
        Ok(ManifestBytes {
            file: size,
            chunks: self.chunk_bytes,
        })
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

/// Whether a chunk ends after the record `(collection, key)`: one key in
/// [`CHUNK_AVERAGE_RECORDS`], chosen by a hash of the name alone.
fn is_boundary(collection: &str, key: &str) -> bool {
    let mut hasher = blake3::Hasher::new();
    hasher.update(collection.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    let low = hash
        .as_bytes()
        .first_chunk::<8>()
        .copied()
        .unwrap_or_default();
    u64::from_le_bytes(low).is_multiple_of(CHUNK_AVERAGE_RECORDS)
}
