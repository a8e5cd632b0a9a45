//! Manifest chunks as a reader meets them: [`ChunkLine`] names one, [`ChunkCursor`] reads it
//! from its pack, checks it against its id, and hands out its record lines.
//!
//! **Invariants:** a chunk is read no larger than [`MAX_CHUNK_RAW_BYTES`] can be stored in,
//! decompressed with a bounded window to at most that, and used only when its bytes hash to
//! its id and it holds exactly the records its line says; each of its lines is bounded like a
//! manifest line.

use std::sync::Arc;

use super::check::stored_bound;
use super::files::io_error;
use super::id::BackupId;
use super::index::Packs;
use super::manifest::{ItemLine, MAX_LINE_BYTES, MAX_WINDOW_LOG, manifest_corrupt};
use super::pack::PackReader;
use super::repository::Repository;
use crate::blob::BlobId;
use crate::error::Result;

/// The most a manifest chunk may hold uncompressed: a chunk ends at 256 KiB of lines, and
/// its last line is at most [`MAX_LINE_BYTES`].
const MAX_CHUNK_RAW_BYTES: u64 = 2 << 20;

/// A line of a version-3 manifest naming a chunk of record lines.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ChunkLine {
    /// The chunk's id: the BLAKE3 hash of its uncompressed lines, in hex.
    pub(super) chunk: String,
    /// The lines it holds (records, and a differential's removals).
    pub(super) records: u64,
}

/// The chunk a reader is in: its lines, where it is, how many records it must hold; the
/// repository's index of manifest chunks (`Packs::load_chunks`), loaded at the first chunk; and
/// the ids of the chunks read. A manifest has a chunk for every few records, so what each
/// chunk's read needs is kept from one to the next: the pack file last read and a zstd
/// decompression context (creating one per chunk was most of a manifest's reading time).
#[derive(Default)]
pub(super) struct ChunkCursor {
    id: Option<BlobId>,
    lines: Vec<u8>,
    at: usize,
    records: u64,
    expected: u64,
    packs: Option<Arc<Packs>>,
    ids: Vec<BlobId>,
    pack_reader: PackReader,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl ChunkCursor {
    /// The ids of the chunks read so far.
    pub(super) fn ids(&self) -> &[BlobId] {
        &self.ids
    }

    /// The next line of the current chunk (a record, or a differential's removal), if it has
    /// one left.
    pub(super) fn next_line(&mut self, backup: &BackupId) -> Result<Option<ItemLine>> {
        let Some(chunk_id) = self.id else {
            return Ok(None);
        };
        let rest = self.lines.get(self.at..).unwrap_or_default();
        if rest.is_empty() {
            if self.records != self.expected {
                return Err(manifest_corrupt(
                    backup,
                    format!(
                        "its chunk {chunk_id} holds {} records where the manifest says {}",
                        self.records, self.expected
                    ),
                ));
            }
            self.id = None;
            self.lines.clear();
            return Ok(None);
        }
        let Some(length) = rest.iter().position(|byte| *byte == b'\n') else {
            return Err(manifest_corrupt(
                backup,
                format!("its chunk {chunk_id} ends in a cut line"),
            ));
        };
        if length >= MAX_LINE_BYTES {
            return Err(manifest_corrupt(
                backup,
                format!("its chunk {chunk_id} has a line too long"),
            ));
        }
        let line = rest.get(..=length).unwrap_or_default();
        let entry = ItemLine::parse(line).map_err(|error| {
            manifest_corrupt(
                backup,
                format!("its chunk {chunk_id} has a line that is neither a record nor a removal ({error})"),
            )
        })?;
        self.at += length + 1;
        self.records += 1;
        Ok(Some(entry))
    }

    /// Reads the chunk a manifest line names from its pack, and checks it against its id.
    pub(super) fn load(
        &mut self,
        repository: &Repository,
        backup: &BackupId,
        line: &ChunkLine,
        line_number: u64,
    ) -> Result<()> {
        let corrupt = |what: String| manifest_corrupt(backup, what);
        let id = Some(line.chunk.as_str())
            .filter(|hex| hex.len() == 64)
            .and_then(BlobId::from_hex)
            .ok_or_else(|| corrupt(format!("line {line_number} names no chunk")))?;
        let packs = match &self.packs {
            Some(packs) => Arc::clone(packs),
            None => Arc::clone(self.packs.insert(Packs::load_chunks(repository)?)),
        };
        let location = packs.chunks.get(&id).ok_or_else(|| {
            corrupt(format!(
                "its chunk {id} is in no index{}",
                packs.missing_hint()
            ))
        })?;
        let stored = self
            .pack_reader
            .read(repository, location, stored_bound(MAX_CHUNK_RAW_BYTES))
            .map_err(|error| corrupt(format!("its chunk {id} cannot be read: {error}")))?;
        let decompressor = match &mut self.decompressor {
            Some(decompressor) => decompressor,
            None => self.decompressor.insert(new_decompressor()?),
        };
        // Decompressed into the spare capacity of `lines`, which it never grows past: a
        // chunk much larger than it can be is an error of zstd's ("destination buffer too
        // small"); the length is checked too, as the capacity may be a little larger.
        self.lines.clear();
        self.lines.reserve_exact(MAX_CHUNK_RAW_BYTES as usize);
        if let Err(error) = decompressor.decompress_to_buffer(&stored, &mut self.lines) {
            self.lines.clear();
            return Err(corrupt(format!("its chunk {id} is damaged ({error})")));
        }
        if self.lines.len() as u64 > MAX_CHUNK_RAW_BYTES || BlobId::of(&self.lines) != id {
            self.lines.clear();
            return Err(corrupt(format!(
                "its chunk {id} is damaged (it does not match its id)"
            )));
        }
        self.ids.push(id);
        self.id = Some(id);
        self.at = 0;
        self.records = 0;
        self.expected = line.records;
        Ok(())
    }
}

/// A decompression context for chunks, with the window bounded as a manifest's is.
fn new_decompressor() -> Result<zstd::bulk::Decompressor<'static>> {
    let action = "create a zstd decompression context";
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(io_error(action))?;
    decompressor
        .window_log_max(MAX_WINDOW_LOG)
        .map_err(io_error(action))?;
    Ok(decompressor)
}
