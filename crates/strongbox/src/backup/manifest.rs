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

use std::io;

use super::chunk::ChunkLine;
use super::id::BackupId;
use crate::blob::BlobId;
use crate::error::Error;
use crate::record::RecordMeta;

pub use super::reader::{ManifestReader, ManifestSummary, read_summary};
pub use super::writer::ManifestWriter;

/// The file name extension of manifests.
pub const EXTENSION: &str = ".jsonl.zst";

/// The `format` value of a manifest header.
pub(super) const MANIFEST_FORMAT: &str = "strongbox-backup-manifest";

/// The newest manifest version this code reads, and writes for a differential manifest.
/// Version 2 added the header's `dictionaries`; version 3 keeps the record lines in chunks
/// stored in packs, and the manifest lists the chunks; version 4 is a differential manifest
/// (its header names a `base`), which an older reader must refuse rather than read as whole.
pub(super) const MANIFEST_VERSION: u32 = 4;

/// The version of a whole (not differential) manifest.
pub(super) const WHOLE_VERSION: u32 = 3;

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
    /// A differential manifest's base: the whole backup whose records it holds but for its
    /// own lines, which add, replace and remove records (manifest version 4). Absent in a
    /// whole manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
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
            version: WHOLE_VERSION,
            id: id.to_string(),
            created_at_ms,
            source,
            strongbox_version: env!("CARGO_PKG_VERSION").to_owned(),
            dictionaries: Vec::new(),
            feed_seq: None,
            base: None,
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

/// A differential manifest's line removing a record its base holds (`removed` is `true`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemovedLine<S> {
    pub(super) collection: S,
    pub(super) key: S,
    pub(super) removed: bool,
}

/// A line of a chunk: a record, or (in a differential manifest) a removal.
pub(super) enum ItemLine {
    Record(RecordLine<String>),
    Removed(RemovedLine<String>),
}

impl ItemLine {
    /// Parses a chunk's line: a record, else a removal. (Not serde's `untagged`, which would
    /// buffer every line into an intermediate tree before trying each variant: most of a
    /// manifest's reading time went there.)
    ///
    /// # Errors
    /// The removal's parse error when the line is neither.
    pub(super) fn parse(line: &[u8]) -> serde_json::Result<Self> {
        match serde_json::from_slice(line) {
            Ok(record) => Ok(ItemLine::Record(record)),
            Err(_) => serde_json::from_slice(line).map(ItemLine::Removed),
        }
    }
}

/// The totals and checksum of the end line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    /// Records in the backup (for a differential manifest, its base's included).
    pub records: u64,
    /// Unique blobs they point at.
    pub blobs: u64,
    /// Sum of the records' `size_bytes`.
    pub logical_bytes: u64,
    /// BLAKE3 of every byte before the end line, in hex.
    pub checksum: String,
    /// A differential manifest's own lines: the records it adds or replaces and the keys it
    /// removes (`records`, `blobs` and `logical_bytes` count the backup's records, base
    /// included). Absent in a whole manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

/// A line after the header: a record, a chunk of records, or the end line.
pub(super) enum Line {
    End { end: Trailer },
    Chunk(ChunkLine),
    Entry(RecordLine<String>),
}

impl Line {
    /// Parses a manifest's line: a chunk (the most frequent), else the end line, else a
    /// record (manifests before chunks). As [`ItemLine::parse`], without serde's `untagged`.
    ///
    /// # Errors
    /// The record's parse error when the line is none of them.
    pub(super) fn parse(line: &[u8]) -> serde_json::Result<Self> {
        #[derive(serde::Deserialize)]
        struct EndLine {
            end: Trailer,
        }
        if let Ok(chunk) = serde_json::from_slice(line) {
            return Ok(Line::Chunk(chunk));
        }
        if let Ok(EndLine { end }) = serde_json::from_slice(line) {
            return Ok(Line::End { end });
        }
        serde_json::from_slice(line).map(Line::Entry)
    }
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

/// A damaged manifest.
pub fn manifest_corrupt(id: &BackupId, what: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        collection: None,
        key: None,
        detail: format!("the manifest of backup {id} cannot be used: {what}"),
    }
}

pub(super) fn damaged(id: &BackupId, error: io::Error) -> Error {
    manifest_corrupt(id, format_args!("it cannot be read ({error})"))
}
