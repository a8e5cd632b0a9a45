//! The pack index: which pack holds each blob and manifest chunk, at which offset, how long.
//!
//! An index file `index/<64 hex digits>` is a zstd frame holding one JSON object, named by the
//! BLAKE3 hash of the file's bytes (see `docs/backup-format.md`); in an encrypted repository
//! the frame is sealed and the hash keyed. Each backup writes one for the packs it wrote;
//! prune writes one for every pack it keeps, then deletes the others.
//! [`Packs::load`] reads them all, under the repository lock, into one map.
//!
//! **Invariants:** an index file is read whole only up to [`MAX_INDEX_FILE_BYTES`], checked
//! against its name before it is decompressed (with a bounded window and output), and nothing
//! in it becomes a path but a parsed 64-hex-digit pack id. A damaged index is reported and its
//! entries are unknown: the backups needing them are damaged, the others stay usable, and
//! prune deletes no pack while any index is damaged.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Arc;

use super::chunk_index::Stamp;
use super::files::{io_error, read_dir, read_regular, sync_dir, write_durably};
use super::pack::Location;
use super::repository::Repository;
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// The `format` of an index file.
const INDEX_FORMAT: &str = "strongbox-backup-index";

/// The largest index file read (compressed): 32 bytes of hash and a few numbers per entry, so
/// tens of millions of entries.
const MAX_INDEX_FILE_BYTES: u64 = 1 << 30;

/// The most an index file may decompress to.
const MAX_INDEX_RAW_BYTES: u64 = 4 << 30;

/// What an index entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A value's stored bytes, named by the hash of its serialized bytes.
    Blob,
    /// A manifest chunk, named by the hash of its uncompressed bytes.
    Chunk,
}

/// One entry of a pack: id (64 hex digits in the file), offset, length.
type EntryRecord = (EntryId, u64, u64);

/// An entry's id, held as its 32 bytes (a million entries of a backup cost 33 bytes each
/// instead of a 64-character `String`), written as 64 hex digits. One that does not parse when
/// read is `None`: that entry is unknown, as a damaged one is, and the rest of its file stays
/// usable (it is written back as an empty string, which does not parse either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryId(Option<BlobId>);

impl serde::Serialize for EntryId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            Some(id) => serializer.serialize_str(&id.to_hex()),
            None => serializer.serialize_str(""),
        }
    }
}

impl<'de> serde::Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(EntryId(BlobId::from_hex(&hex)))
    }
}

/// What one pack holds, as an index file lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PackRecord {
    /// The pack's id, 64 hex digits.
    pub(crate) id: String,
    /// Its blobs.
    #[serde(default)]
    pub(crate) blobs: Vec<EntryRecord>,
    /// Its manifest chunks.
    #[serde(default)]
    pub(crate) chunks: Vec<EntryRecord>,
}

impl PackRecord {
    /// Adds an entry.
    pub(crate) fn push(&mut self, kind: EntryKind, id: BlobId, offset: u64, length: u64) {
        let entry = (EntryId(Some(id)), offset, length);
        match kind {
            EntryKind::Blob => self.blobs.push(entry),
            EntryKind::Chunk => self.chunks.push(entry),
        }
    }
}

/// The contents of an index file (read with `P = PackChunks` when the values' entries are
/// not wanted).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct IndexFile<P = PackRecord> {
    format: String,
    version: u32,
    packs: Vec<P>,
}

/// A [`PackRecord`] read without its values' entries: they are parsed (the file is checked
/// whole) but not kept.
#[derive(serde::Deserialize)]
struct PackChunks {
    id: String,
    #[serde(default, rename = "blobs")]
    _blobs: serde::de::IgnoredAny,
    #[serde(default)]
    chunks: Vec<EntryRecord>,
}

impl From<PackChunks> for PackRecord {
    fn from(pack: PackChunks) -> Self {
        PackRecord {
            id: pack.id,
            blobs: Vec::new(),
            chunks: pack.chunks,
        }
    }
}

/// Every index of a repository, loaded.
#[derive(Debug, Default)]
pub(crate) struct Packs {
    /// Where each blob is.
    pub(crate) blobs: HashMap<BlobId, Location>,
    /// Where each manifest chunk is.
    pub(crate) chunks: HashMap<BlobId, Location>,
    /// Each indexed pack with the bytes of its entries (counting each entry once).
    pub(crate) packs: BTreeMap<BlobId, u64>,
    /// The index files read.
    pub(crate) index_files: Vec<BlobId>,
    /// The index files that cannot be used, with why.
    pub(crate) damaged: Vec<String>,
}

impl Packs {
    /// Reads every index file of `repository`; a damaged one is listed in `damaged`.
    ///
    /// # Errors
    /// `Error::Io` when `index/` cannot be listed, `Error::Corrupt` when it is not a real
    /// directory.
    pub(crate) fn load(repository: &Repository) -> Result<Self> {
        let listing = read_dir(&repository.index_dir())?;
        let stamp = Stamp::of(&listing);
        let packs = Self::load_listed(repository, listing, true);
        // The manifests read next (a backup's base, a restore's) need no second reading.
        repository
            .chunk_index
            .put(stamp, &Arc::new(packs.chunks_only()));
        Ok(packs)
    }

    /// [`Packs::load`] without the values' entries: `blobs` and `packs` stay empty. What
    /// reading a manifest needs, without a map of every value (a million values' entries are
    /// over 100 MB); kept in the repository's
    /// [`ChunkIndexCache`](super::chunk_index::ChunkIndexCache) for the next manifest.
    ///
    /// # Errors
    /// As [`Packs::load`].
    pub(crate) fn load_chunks(repository: &Repository) -> Result<Arc<Self>> {
        let listing = read_dir(&repository.index_dir())?;
        let stamp = Stamp::of(&listing);
        if let Some(packs) = repository.chunk_index.get(&stamp) {
            return Ok(packs);
        }
        let packs = Arc::new(Self::load_listed(repository, listing, false));
        repository.chunk_index.put(stamp, &packs);
        Ok(packs)
    }

    fn load_listed(
        repository: &Repository,
        listing: Vec<(std::path::PathBuf, std::fs::FileType)>,
        with_blobs: bool,
    ) -> Self {
        let mut packs = Packs::default();
        for (path, file_type) in listing {
            let Some(id) = path
                .file_name()
                .and_then(|name| name.to_str())
                .filter(|name| name.len() == 64)
                .and_then(BlobId::from_hex)
            else {
                continue;
            };
            if !file_type.is_file() {
                packs
                    .damaged
                    .push(format!("index file {id} is not a regular file"));
                continue;
            }
            let read = if with_blobs {
                read_index(repository, &path, &id)
            } else {
                read_index::<PackChunks>(repository, &path, &id).map(|file| IndexFile {
                    format: file.format,
                    version: file.version,
                    packs: file.packs.into_iter().map(PackRecord::from).collect(),
                })
            };
            match read {
                Ok(file) => {
                    packs.add(&file, with_blobs);
                    packs.index_files.push(id);
                }
                Err(detail) => packs.damaged.push(format!("index file {id} {detail}")),
            }
        }
        packs
    }

    fn add(&mut self, file: &IndexFile, with_blobs: bool) {
        for pack in &file.packs {
            let Some(pack_id) = BlobId::from_hex(&pack.id) else {
                continue;
            };
            let mut bytes = 0;
            let blobs: &[EntryRecord] = if with_blobs { &pack.blobs } else { &[] };
            for (kind, entries) in [
                (EntryKind::Blob, blobs),
                (EntryKind::Chunk, pack.chunks.as_slice()),
            ] {
                for (EntryId(id), offset, length) in entries {
                    let Some(id) = *id else {
                        continue;
                    };
                    let map = match kind {
                        EntryKind::Blob => &mut self.blobs,
                        EntryKind::Chunk => &mut self.chunks,
                    };
                    map.entry(id).or_insert(Location {
                        pack: pack_id,
                        offset: *offset,
                        length: *length,
                    });
                    bytes += length;
                }
            }
            if with_blobs {
                let known = self.packs.entry(pack_id).or_insert(0);
                *known = (*known).max(bytes);
            }
        }
    }

    /// What [`Packs::load_chunks`] would read from the same index files.
    fn chunks_only(&self) -> Packs {
        Packs {
            blobs: HashMap::new(),
            chunks: self.chunks.clone(),
            packs: BTreeMap::new(),
            index_files: self.index_files.clone(),
            damaged: self.damaged.clone(),
        }
    }

    /// Why an entry absent from the index may be missing: the damaged index files, if any.
    pub(crate) fn missing_hint(&self) -> String {
        match self.damaged.first() {
            None => String::new(),
            Some(first) => format!(
                " ({} index file(s) cannot be read, the first: {first})",
                self.damaged.len()
            ),
        }
    }
}

/// Reads and checks one index file (and opens it, in an encrypted repository).
fn read_index<P: serde::de::DeserializeOwned>(
    repository: &Repository,
    path: &std::path::Path,
    id: &BlobId,
) -> std::result::Result<IndexFile<P>, String> {
    let bytes = read_regular(path, MAX_INDEX_FILE_BYTES)
        .map_err(|error| format!("cannot be read: {error}"))?;
    if repository.object_id(&bytes) != *id {
        return Err("does not match its name: it was damaged or edited".into());
    }
    let bytes = repository
        .open_object(bytes)
        .map_err(|error| format!("cannot be opened: it {error}"))?;
    let mut decoder =
        zstd::Decoder::new(bytes.as_slice()).map_err(|error| format!("is damaged: {error}"))?;
    decoder
        .window_log_max(27)
        .map_err(|error| format!("is damaged: {error}"))?;
    // Parsed as it is decompressed, without the whole JSON in memory.
    let json = std::io::BufReader::with_capacity(1 << 16, decoder.take(MAX_INDEX_RAW_BYTES));
    let file: IndexFile<P> =
        serde_json::from_reader(json).map_err(|error| format!("is damaged: {error}"))?;
    if file.format != INDEX_FORMAT || file.version != 1 {
        return Err(format!(
            "is not a version 1 index ({:?} version {})",
            file.format.chars().take(40).collect::<String>(),
            file.version
        ));
    }
    Ok(file)
}

/// Writes an index file naming `packs`, durably: under `tmp/`, synced, renamed into `index/`,
/// `index/` synced. Returns its id and size (nothing is written for no packs).
pub(crate) fn write_index(
    repository: &Repository,
    packs: Vec<PackRecord>,
) -> Result<Option<(BlobId, u64)>> {
    if packs.is_empty() {
        return Ok(None);
    }
    let file = IndexFile {
        format: INDEX_FORMAT.to_owned(),
        version: 1,
        packs,
    };
    // Encoded straight into the compressor: a backup of a million values never holds the
    // index's JSON (tens of megabytes) whole.
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).map_err(io_error("compress an index"))?;
    let mut json = std::io::BufWriter::with_capacity(1 << 16, &mut encoder);
    serde_json::to_writer(&mut json, &file)
        .map_err(|error| Error::backend("encode an index", error))?;
    json.flush().map_err(io_error("compress an index"))?;
    drop(json);
    let compressed = encoder.finish().map_err(io_error("compress an index"))?;
    let bytes = repository.seal_object(&compressed)?;
    let id = repository.object_id(&bytes);
    let temporary = repository.tmp_dir().join(format!("index-{}", id.to_hex()));
    write_durably(&temporary, &bytes)?;
    let path = repository.index_dir().join(id.to_hex());
    std::fs::rename(&temporary, &path).map_err(io_error(format!("publish {}", path.display())))?;
    sync_dir(&repository.index_dir())?;
    Ok(Some((id, bytes.len() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_as_hex_and_a_malformed_one_reads_as_unknown() {
        let id = BlobId::of(b"a value");
        let mut record = PackRecord {
            id: BlobId::of(b"a pack").to_hex(),
            ..PackRecord::default()
        };
        record.push(EntryKind::Blob, id, 7, 42);
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            json.contains(&format!("\"blobs\":[[\"{}\",7,42]]", id.to_hex())),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<PackRecord>(&json).unwrap(), record);
        // One damaged id leaves that entry unknown and the others usable.
        let damaged = json.replace(&id.to_hex(), &format!("zz{}", &id.to_hex()[2..]));
        let read: PackRecord = serde_json::from_str(&damaged).unwrap();
        assert_eq!(read.blobs, [(EntryId(None), 7, 42)]);
        let mut packs = Packs::default();
        packs.add(
            &IndexFile {
                format: INDEX_FORMAT.to_owned(),
                version: 1,
                packs: vec![record, read],
            },
            true,
        );
        assert_eq!(packs.blobs.len(), 1);
        assert_eq!(packs.blobs[&id].length, 42);
    }

    /// An index file of one pack holding chunk `chunk`, written into `repository`.
    fn index_naming(repository: &Repository, chunk: &[u8]) -> BlobId {
        let mut record = PackRecord {
            id: BlobId::of(chunk).to_hex(),
            ..PackRecord::default()
        };
        record.push(EntryKind::Chunk, BlobId::of(chunk), 0, 10);
        let (id, _) = write_index(repository, vec![record]).unwrap().unwrap();
        id
    }

    #[test]
    fn the_chunk_index_is_kept_until_an_index_file_is_added_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let repository = Repository::plain(dir.path().to_owned());
        for sub in ["index", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let first_file = index_naming(&repository, b"chunk one");
        let first = Packs::load_chunks(&repository).unwrap();
        assert!(first.chunks.contains_key(&BlobId::of(b"chunk one")));
        assert!(Arc::ptr_eq(
            &first,
            &Packs::load_chunks(&repository).unwrap()
        ));
        // A new index file: read again, both chunks known.
        index_naming(&repository, b"chunk two");
        let second = Packs::load_chunks(&repository).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.chunks.len(), 2);
        // Damaged in place (same name, same length, a later time): read again, and damaged.
        let path = repository.index_dir().join(first_file.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let damaged = Packs::load_chunks(&repository).unwrap();
        assert_eq!(damaged.damaged.len(), 1, "{damaged:?}");
        assert_eq!(damaged.chunks.len(), 1);
        // A damaged load is not kept: the next reads the files again.
        assert!(!Arc::ptr_eq(
            &damaged,
            &Packs::load_chunks(&repository).unwrap()
        ));
    }
}
