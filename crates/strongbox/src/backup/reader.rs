//! [`ManifestReader`]: reading a manifest (see [`super::manifest`]) line by line, checking
//! everything it returns; for a differential manifest, merging its lines with its base's
//! records ([`super::differential`]).
//!
//! **Invariants:** as [`super::manifest`] says: nothing is returned unchecked, memory stays
//! bounded whatever the file holds, and every reader (list, verify, restore, prune) goes
//! through these checks, so they agree on what is damaged.

use std::io::{self, BufRead, BufReader, Read};

use super::check::{check_dictionary_ref, check_record};
use super::chunk::ChunkCursor;
use super::differential::Merge;
use super::files::{io_error, open_regular};
use super::id::BackupId;
use super::manifest::{
    Entry, Header, ItemLine, Line, MANIFEST_FORMAT, MANIFEST_VERSION, MAX_HEADER_BYTES,
    MAX_LINE_BYTES, MAX_WINDOW_LOG, RecordLine, Source, Trailer, damaged, manifest_corrupt,
};
use super::repository::Repository;
use super::sealed::ManifestSource;
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{RecordMeta, Version};

/// Reads a manifest line by line, checking everything it returns.
pub struct ManifestReader {
    pub(super) id: BackupId,
    repository: Repository,
    chunk: ChunkCursor,
    lines: BufReader<zstd::Decoder<'static, BufReader<ManifestSource>>>,
    hasher: blake3::Hasher,
    header: Header,
    /// The end line, once every record was returned and the totals checked.
    trailer: Option<Trailer>,
    /// The end line, once read and its checksum checked (the totals are checked after the
    /// base's records too).
    pub(super) end: Option<Trailer>,
    line: Vec<u8>,
    line_number: u64,
    /// The manifest's own record (and removal) lines read.
    pub(super) own_lines: u64,
    /// Records returned, and the sum of their sizes.
    records: u64,
    logical_bytes: u64,
    last: Option<(String, String)>,
    /// A differential manifest's merge with its base ([`super::differential`]).
    pub(super) merge: Option<Box<Merge>>,
}

/// What a line of a manifest's own says about a record.
pub(super) enum Own {
    /// The record, added or replaced.
    Put(Entry),
    /// The record of the base under this name is removed.
    Removed(String, String),
}

impl ManifestReader {
    /// Opens the manifest of backup `id` and checks its header; a differential manifest's
    /// base is opened too, and its records are merged with the manifest's own lines.
    ///
    /// # Errors
    /// `Error::Io` when there is no such backup, `Error::InvalidConfig` when a newer Strongbox
    /// wrote it, `Error::Corrupt` when it (or a differential's base) is damaged.
    pub fn open(repository: &Repository, id: &BackupId) -> Result<Self> {
        let mut reader = ManifestReader::open_own(repository, id)?;
        if let Some(base) = reader.header.base.clone() {
            reader.merge = Some(Box::new(Merge::open(repository, id, &base)?));
        }
        Ok(reader)
    }

    /// Opens the manifest of backup `id` alone: a differential's own lines are not merged
    /// with its base ([`ManifestReader::next_own`]).
    ///
    /// # Errors
    /// As [`ManifestReader::open`].
    pub(super) fn open_own(repository: &Repository, id: &BackupId) -> Result<Self> {
        let path = repository.manifest_path(id);
        let file = open_regular(&path).map_err(|source| match source.kind() {
            // A FIFO, device or link under a manifest's name is damage, not a missing backup.
            io::ErrorKind::InvalidData => damaged(id, source),
            _ => {
                let action = format!(
                    "open backup {id} in {} (see the list of backups)",
                    repository.dir().display()
                );
                io_error(action)(source)
            }
        })?;
        let source = ManifestSource::new(repository, file).map_err(|error| damaged(id, error))?;
        let mut decoder = zstd::Decoder::new(source).map_err(|error| damaged(id, error))?;
        decoder
            .window_log_max(MAX_WINDOW_LOG)
            .map_err(|error| damaged(id, error))?;
        let mut reader = ManifestReader {
            id: id.clone(),
            repository: repository.clone(),
            chunk: ChunkCursor::default(),
            lines: BufReader::with_capacity(64 << 10, decoder),
            hasher: blake3::Hasher::new(),
            header: Header::new(
                id,
                0,
                Source {
                    backend: String::new(),
                    location: String::new(),
                },
            ),
            trailer: None,
            end: None,
            line: Vec::with_capacity(512),
            line_number: 0,
            own_lines: 0,
            records: 0,
            logical_bytes: 0,
            last: None,
            merge: None,
        };
        if !reader.read_line(MAX_HEADER_BYTES)? {
            return Err(reader.corrupt("it is empty"));
        }
        reader.hasher.update(&reader.line);
        /// What every version's header has in common.
        #[derive(serde::Deserialize)]
        struct FormatLine {
            format: String,
            version: u32,
        }
        let version: FormatLine = serde_json::from_slice(&reader.line)
            .map_err(|error| reader.corrupt(format!("its header is unreadable ({error})")))?;
        if version.format != MANIFEST_FORMAT {
            return Err(reader.corrupt("it is not a Strongbox backup manifest"));
        }
        if version.version > MANIFEST_VERSION {
            return Err(Error::InvalidConfig(format!(
                "backup {id} has manifest version {}, newer than this Strongbox understands \
                 ({MANIFEST_VERSION}); upgrade Strongbox",
                version.version
            )));
        }
        let header: Header = serde_json::from_slice(&reader.line)
            .map_err(|error| reader.corrupt(format!("its header is unreadable ({error})")))?;
        if header.id != id.as_str() {
            // Never used for anything but this message: only the file name identifies a backup.
            return Err(reader.corrupt(format!(
                "its header names another backup ({:?})",
                header.id.chars().take(64).collect::<String>()
            )));
        }
        if header.base.is_some() && version.version < MANIFEST_VERSION {
            return Err(reader.corrupt(format!(
                "it names a base, which a manifest of version {} cannot",
                version.version
            )));
        }
        for dictionary in &header.dictionaries {
            check_dictionary_ref(dictionary).map_err(|what| reader.corrupt(what))?;
        }
        reader.header = header;
        // A long header does not keep its buffer for every record line.
        reader.line = Vec::with_capacity(512);
        Ok(reader)
    }

    /// The header line.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The end line, once [`ManifestReader::next_entry`] returned `None`.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The next record, or `None` after the last one, once the end line, the checksum and
    /// the totals were checked.
    ///
    /// # Errors
    /// `Error::Corrupt` naming the backup (and the line) when anything does not check out.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        let next = match self.merge.is_some() {
            true => self.next_merged()?,
            false => match self.next_own()? {
                Some(Own::Put(entry)) => Some(entry),
                Some(Own::Removed(..)) => {
                    return Err(self.corrupt("it removes a record but names no base"));
                }
                None => None,
            },
        };
        let Some(entry) = next else {
            self.check_totals()?;
            return Ok(None);
        };
        self.records += 1;
        self.logical_bytes = self
            .logical_bytes
            .checked_add(entry.meta.size_bytes)
            .ok_or_else(|| self.corrupt("its records' sizes add up past 2^64 bytes"))?;
        Ok(Some(entry))
    }

    /// The next of the manifest's own lines, or `None` after the end line (whose checksum
    /// is then checked, and kept in `end`).
    ///
    /// # Errors
    /// `Error::Corrupt` naming the backup (and the line) when anything does not check out.
    pub(super) fn next_own(&mut self) -> Result<Option<Own>> {
        loop {
            if self.end.is_some() {
                return Ok(None);
            }
            if let Some(item) = self.chunk.next_line(&self.id)? {
                self.own_lines += 1;
                return self.check_item(item).map(Some);
            }
            if !self.read_line(MAX_LINE_BYTES)? {
                return Err(self.corrupt("it is truncated (it has no end line)"));
            }
            let line = Line::parse(&self.line).map_err(|error| {
                self.corrupt(format!(
                    "line {} is not a record ({error})",
                    self.line_number
                ))
            })?;
            match line {
                Line::End { end } => {
                    self.check_end(&end)?;
                    self.end = Some(end);
                    return Ok(None);
                }
                Line::Chunk(chunk) => {
                    self.hasher.update(&self.line);
                    self.chunk
                        .load(&self.repository, &self.id, &chunk, self.line_number)?;
                }
                Line::Entry(entry) => {
                    self.hasher.update(&self.line);
                    self.own_lines += 1;
                    return self.check_entry(entry).map(|entry| Some(Own::Put(entry)));
                }
            }
        }
    }

    /// The ids of the chunks read so far (a differential's base's included).
    pub fn chunk_ids(&self) -> Vec<BlobId> {
        let mut ids = self.chunk.ids().to_vec();
        if let Some(merge) = &self.merge {
            ids.extend(merge.base_chunk_ids());
        }
        ids
    }

    /// Checks a chunk's line.
    fn check_item(&mut self, item: ItemLine) -> Result<Own> {
        match item {
            ItemLine::Record(entry) => self.check_entry(entry).map(Own::Put),
            ItemLine::Removed(removed) if removed.removed => self
                .check_name(removed.collection, removed.key)
                .map(|(collection, key)| Own::Removed(collection, key)),
            ItemLine::Removed(_) => Err(self.corrupt(format!(
                "a line of its chunk read at line {} is a removal that removes nothing",
                self.line_number
            ))),
        }
    }

    /// Checks a name of the manifest's own lines: valid, and after the previous one.
    fn check_name(&mut self, collection: String, key: String) -> Result<(String, String)> {
        let line_number = self.line_number;
        if validate_collection(&collection).is_err() || validate_key(&key).is_err() {
            return Err(self.corrupt(format!(
                "line {line_number} has an invalid collection name or key"
            )));
        }
        if self.last.as_ref().is_some_and(|last| {
            (last.0.as_bytes(), last.1.as_bytes()) >= (collection.as_bytes(), key.as_bytes())
        }) {
            return Err(self.corrupt(format!(
                "line {line_number} is out of order or repeats a key"
            )));
        }
        self.last = Some((collection.clone(), key.clone()));
        Ok((collection, key))
    }

    fn check_entry(&mut self, entry: RecordLine<String>) -> Result<Entry> {
        let line_number = self.line_number;
        let blob_id = Some(entry.blob.as_str())
            .filter(|hex| hex.len() == 64)
            .and_then(BlobId::from_hex)
            .ok_or_else(|| self.corrupt(format!("line {line_number} has an invalid blob id")))?;
        let meta = RecordMeta {
            version: Version::new(entry.version),
            created_at_ms: entry.created_at_ms,
            updated_at_ms: entry.updated_at_ms,
            size_bytes: entry.size_bytes,
            access_count: entry.access_count,
            last_accessed_ms: entry.last_accessed_ms,
            expires_at_ms: entry.expires_at_ms,
        };
        check_record(entry.format, &meta)
            .map_err(|what| self.corrupt(format!("line {line_number} {what}")))?;
        let (collection, key) = self.check_name(entry.collection, entry.key)?;
        Ok(Entry {
            collection,
            key,
            blob_id,
            format: entry.format,
            meta,
        })
    }

    /// Checks the end line's checksum, and that nothing follows it.
    fn check_end(&mut self, end: &Trailer) -> Result<()> {
        let checksum = self.hasher.finalize().to_hex().to_string();
        if end.checksum != checksum {
            return Err(self.corrupt("its checksum does not match: it was damaged or edited"));
        }
        let differential = self.header.base.is_some();
        if differential && end.lines != Some(self.own_lines) {
            return Err(self.corrupt(format!(
                "its end line counts {:?} lines of its own but it holds {}",
                end.lines, self.own_lines
            )));
        }
        let mut rest = [0u8; 1];
        match self.lines.read(&mut rest) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.corrupt("it has data after its end line")),
            Err(error) => Err(damaged(&self.id, error)),
        }
    }

    /// Checks the end line's totals against the records returned, once they all were.
    fn check_totals(&mut self) -> Result<()> {
        let end = self
            .end
            .clone()
            .ok_or_else(|| self.corrupt("it has no end line"))?;
        if end.records != self.records {
            return Err(self.corrupt(format!(
                "its end line counts {} records but it holds {}",
                end.records, self.records
            )));
        }
        if end.logical_bytes != self.logical_bytes {
            return Err(self.corrupt(format!(
                "its end line counts {} logical bytes but its records add up to {}",
                end.logical_bytes, self.logical_bytes
            )));
        }
        // Counting distinct blobs exactly would take memory per blob: a count that cannot be
        // right is enough to catch a forged end line.
        if end.blobs > end.records || (end.blobs == 0) != (end.records == 0) {
            return Err(self.corrupt(format!(
                "its end line counts {} blobs for {} records",
                end.blobs, end.records
            )));
        }
        self.trailer = Some(end);
        Ok(())
    }

    /// Reads the next line, of at most `limit` bytes with its newline, into `self.line`;
    /// `false` at the end of the file. A last line without its newline is a truncation; a
    /// longer line is damage, found after reading `limit + 1` bytes of it, never more.
    fn read_line(&mut self, limit: usize) -> Result<bool> {
        self.line.clear();
        let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let read = (&mut self.lines)
            .take(bound)
            .read_until(b'\n', &mut self.line)
            .map_err(|error| damaged(&self.id, error))?;
        if read == 0 {
            return Ok(false);
        }
        self.line_number += 1;
        if self.line.last() != Some(&b'\n') {
            if self.line.len() > limit {
                return Err(self.corrupt(format!(
                    "line {} is longer than {limit} bytes, more than any manifest line can be",
                    self.line_number
                )));
            }
            return Err(self.corrupt("it is truncated (its last line is cut short)"));
        }
        Ok(true)
    }

    pub(super) fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        manifest_corrupt(&self.id, what)
    }
}

/// The header and end line of a checked manifest.
#[derive(Debug, Clone)]
pub struct ManifestSummary {
    /// The header.
    pub header: Header,
    /// The end line.
    pub trailer: Trailer,
}

/// Reads and checks a whole manifest, keeping only its header and end line.
///
/// # Errors
/// As [`ManifestReader`].
pub fn read_summary(repository: &Repository, id: &BackupId) -> Result<ManifestSummary> {
    let mut reader = ManifestReader::open(repository, id)?;
    while reader.next_entry()?.is_some() {}
    let trailer = reader
        .trailer()
        .cloned()
        .ok_or_else(|| manifest_corrupt(id, "it has no end line"))?;
    Ok(ManifestSummary {
        header: reader.header,
        trailer,
    })
}
