//! Manifests: the list of a backup's records, written once and checked on every read.
//!
//! A manifest is a zstd frame holding JSON Lines: a header line, one line per record in
//! (collection, key) byte order, and an end line with the totals and the BLAKE3 checksum of
//! every byte before it (see `docs/backup-format.md`).
//!
//! **Invariants:** a reader returns nothing it has not checked: blob ids parse as 64 hex
//! digits, names pass the store's name rules, every record is one a restore can write
//! (`check_record`), records are strictly ordered, and the end line is present with a
//! matching checksum and totals; otherwise the manifest is `Error::Corrupt`, naming it. Every
//! reader (list, verify, restore, prune) goes through these checks, so they agree on what is
//! damaged. A reader's memory is bounded whatever the file holds: only a regular file is
//! opened, it is decompressed as a stream with a bounded zstd window, and each line is read
//! with a length limit ([`MAX_HEADER_BYTES`], [`MAX_LINE_BYTES`]).

use std::io::{self, BufRead, BufReader, Read};

use super::check::{check_dictionary_ref, check_record};
use super::chunk::{ChunkCursor, ChunkLine};
use super::files::{io_error, open_regular};
use super::id::BackupId;
use super::repository::Repository;
use super::sealed::ManifestSource;
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{RecordMeta, Version};

pub use super::writer::ManifestWriter;

/// The file name extension of manifests.
pub const EXTENSION: &str = ".jsonl.zst";

/// The `format` value of a manifest header.
const MANIFEST_FORMAT: &str = "strongbox-backup-manifest";

/// The newest manifest version this code writes and reads. Version 2 added the header's
/// `dictionaries`; version 3 keeps the record lines in chunks stored in packs, and the
/// manifest lists the chunks.
const MANIFEST_VERSION: u32 = 3;

/// The longest header line read, newline included: the header names the source and every
/// dictionary (about 150 bytes each).
pub const MAX_HEADER_BYTES: usize = 16 << 20;

/// The longest record or end line read, newline included. A record holds at most a 255-byte
/// collection and a 1024-byte key, each byte escaped to at most 6 in JSON, and a few numbers.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The zstd window a reader accepts, as a power of two (128 MiB, zstd's own default limit):
/// the most memory a hostile frame header can make the decoder reserve.
pub(super) const MAX_WINDOW_LOG: u32 = 27;

/// Where a backup came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The file path or the redacted URL.
    pub location: String,
}

/// The first line of a manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Always `strongbox-backup-manifest`.
    pub format: String,
    /// The manifest version.
    pub version: u32,
    /// The backup id, equal to the file name's.
    pub id: String,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The store backed up.
    pub source: Source,
    /// The version of Strongbox that wrote the backup.
    pub strongbox_version: String,
    /// The compression dictionaries of the store (version 2): blobs compressed with one need
    /// it to decode. Their bytes are in `dictionaries/<id>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<DictionaryRef>,
    /// The store's change-feed position the backup holds: every change numbered up to it is
    /// in the backup and none above (absent in backups taken before Strongbox recorded it).
    /// `backup follow` continues from the newest backup's position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_seq: Option<u64>,
}

/// A compression dictionary a backup needs, as its manifest names it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DictionaryRef {
    /// The zstd dictionary id, 8 lowercase hex digits.
    pub id: String,
    /// The collection it was trained for.
    pub collection: String,
    /// When it was trained, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Its compressed/raw ratio when trained.
    pub ratio: f64,
}

impl DictionaryRef {
    /// The id as a number, if it is 8 hex digits.
    pub fn parse_id(&self) -> Option<u32> {
        (self.id.len() == 8)
            .then(|| u32::from_str_radix(&self.id, 16).ok())
            .flatten()
    }
}

impl Header {
    /// The header of a new backup.
    pub fn new(id: &BackupId, created_at_ms: i64, source: Source) -> Self {
        Header {
            format: MANIFEST_FORMAT.to_owned(),
            version: MANIFEST_VERSION,
            id: id.to_string(),
            created_at_ms,
            source,
            strongbox_version: env!("CARGO_PKG_VERSION").to_owned(),
            dictionaries: Vec::new(),
            feed_seq: None,
        }
    }

    /// The header naming `dictionaries`.
    pub fn with_dictionaries(mut self, dictionaries: Vec<DictionaryRef>) -> Self {
        self.dictionaries = dictionaries;
        self
    }
}

/// A record line, as written (`S = &str`) and as read before it is checked (`S = String`).
/// The field order is the line's key order.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct RecordLine<S> {
    pub(super) collection: S,
    pub(super) key: S,
    /// The blob id, in hex.
    pub(super) blob: S,
    pub(super) format: u8,
    pub(super) version: u64,
    pub(super) created_at_ms: i64,
    pub(super) updated_at_ms: i64,
    pub(super) size_bytes: u64,
    pub(super) access_count: u64,
    pub(super) last_accessed_ms: i64,
    /// When the record expires; absent for a record that never does (and in manifests
    /// written before records could expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expires_at_ms: Option<i64>,
}

/// The totals and checksum of the end line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    /// Record lines in the manifest.
    pub records: u64,
    /// Unique blobs they point at.
    pub blobs: u64,
    /// Sum of the records' `size_bytes`.
    pub logical_bytes: u64,
    /// BLAKE3 of every byte before the end line, in hex.
    pub checksum: String,
}

/// A line after the header: a record, a chunk of records, or the end line.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Line {
    End { end: Trailer },
    Chunk(ChunkLine),
    Entry(RecordLine<String>),
}

/// A checked record of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// The blob holding its value.
    pub blob_id: BlobId,
    /// The serialization format tag.
    pub format: u8,
    /// Version and metadata.
    pub meta: RecordMeta,
}

/// Reads a manifest line by line, checking everything it returns.
pub struct ManifestReader {
    id: BackupId,
    repository: Repository,
    chunk: ChunkCursor,
    lines: BufReader<zstd::Decoder<'static, BufReader<ManifestSource>>>,
    hasher: blake3::Hasher,
    header: Header,
    trailer: Option<Trailer>,
    line: Vec<u8>,
    line_number: u64,
    records: u64,
    logical_bytes: u64,
    last: Option<(String, String)>,
}

impl ManifestReader {
    /// Opens the manifest of backup `id` and checks its header.
    ///
    /// # Errors
    /// `Error::Io` when there is no such backup, `Error::InvalidConfig` when a newer Strongbox
    /// wrote it, `Error::Corrupt` when it is damaged.
    pub fn open(repository: &Repository, id: &BackupId) -> Result<Self> {
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
            line: Vec::with_capacity(512),
            line_number: 0,
            records: 0,
            logical_bytes: 0,
            last: None,
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

    /// The next record, or `None` after the last one, once the end line and the checksum
    /// were checked.
    ///
    /// # Errors
    /// `Error::Corrupt` naming the backup (and the line) when anything does not check out.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if self.trailer.is_some() {
                return Ok(None);
            }
            if let Some(entry) = self.chunk.next_line(&self.id)? {
                self.records += 1;
                return self.check_entry(entry).map(Some);
            }
            if !self.read_line(MAX_LINE_BYTES)? {
                return Err(self.corrupt("it is truncated (it has no end line)"));
            }
            let line: Line = serde_json::from_slice(&self.line).map_err(|error| {
                self.corrupt(format!(
                    "line {} is not a record ({error})",
                    self.line_number
                ))
            })?;
            match line {
                Line::End { end } => {
                    self.check_end(&end)?;
                    self.trailer = Some(end);
                    return Ok(None);
                }
                Line::Chunk(chunk) => {
                    self.hasher.update(&self.line);
                    self.chunk
                        .load(&self.repository, &self.id, &chunk, self.line_number)?;
                }
                Line::Entry(entry) => {
                    self.hasher.update(&self.line);
                    self.records += 1;
                    return self.check_entry(entry).map(Some);
                }
            }
        }
    }

    /// The ids of the chunks read so far.
    pub fn chunk_ids(&self) -> &[BlobId] {
        self.chunk.ids()
    }

    fn check_entry(&mut self, entry: RecordLine<String>) -> Result<Entry> {
        let line_number = self.line_number;
        let blob_id = Some(entry.blob.as_str())
            .filter(|hex| hex.len() == 64)
            .and_then(BlobId::from_hex)
            .ok_or_else(|| self.corrupt(format!("line {line_number} has an invalid blob id")))?;
        if validate_collection(&entry.collection).is_err() || validate_key(&entry.key).is_err() {
            return Err(self.corrupt(format!(
                "line {line_number} has an invalid collection name or key"
            )));
        }
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
        self.logical_bytes = self
            .logical_bytes
            .checked_add(meta.size_bytes)
            .ok_or_else(|| self.corrupt("its records' sizes add up past 2^64 bytes"))?;
        let name = (entry.collection, entry.key);
        if self.last.as_ref().is_some_and(|last| {
            (last.0.as_bytes(), last.1.as_bytes()) >= (name.0.as_bytes(), name.1.as_bytes())
        }) {
            return Err(self.corrupt(format!(
                "line {line_number} is out of order or repeats a key"
            )));
        }
        self.last = Some(name.clone());
        Ok(Entry {
            collection: name.0,
            key: name.1,
            blob_id,
            format: entry.format,
            meta,
        })
    }

    fn check_end(&mut self, end: &Trailer) -> Result<()> {
        let checksum = self.hasher.finalize().to_hex().to_string();
        if end.checksum != checksum {
            return Err(self.corrupt("its checksum does not match: it was damaged or edited"));
        }
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
        let mut rest = [0u8; 1];
        match self.lines.read(&mut rest) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.corrupt("it has data after its end line")),
            Err(error) => Err(damaged(&self.id, error)),
        }
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

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
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

/// A damaged manifest.
pub fn manifest_corrupt(id: &BackupId, what: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        collection: None,
        key: None,
        detail: format!("the manifest of backup {id} cannot be used: {what}"),
    }
}

fn damaged(id: &BackupId, error: io::Error) -> Error {
    manifest_corrupt(id, format_args!("it cannot be read ({error})"))
}
