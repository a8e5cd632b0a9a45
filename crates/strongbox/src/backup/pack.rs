//! Pack files: many blobs and manifest chunks in one file, so that a repository is a few files
//! of a few MiB instead of one file (and one file-system block or more) per value.
//!
//! A pack is the plain concatenation of its entries' bytes (each sealed on its own in an
//! encrypted repository), and is named by the BLAKE3 hash of those bytes (keyed, in an
//! encrypted repository): `packs/<first 2 hex digits>/<64 hex digits>`. What is where is in
//! the index ([`super::index`]); a pack no index names is garbage, which prune deletes.
//!
//! **Invariants:** a pack is written under `tmp/`, synced, and only then renamed to its name,
//! so a pack under its name is always whole; the index naming it is written after that rename
//! is durable (its directory synced). A read of an entry is bounded by the length the index
//! gives it, and that length by what the entry can be.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::{create_dir, io_error, open_regular, require_dir, sync_dir};
use super::index::{EntryKind, PackRecord};
use super::repository::Repository;
use crate::blob::BlobId;
use crate::error::Result;

/// The size at which a pack is closed and a new one begun: large enough that a repository is
/// few files, small enough that a repack copies little.
pub(crate) const PACK_TARGET_BYTES: u64 = 4 << 20;

/// Where an entry is: its pack, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The pack's id (the hash of its bytes).
    pub(crate) pack: BlobId,
    /// The entry's first byte in the pack.
    pub(crate) offset: u64,
    /// The entry's length in bytes.
    pub(crate) length: u64,
}

/// A pack being written under `tmp/`.
struct OpenPack {
    path: PathBuf,
    file: BufWriter<File>,
    hasher: blake3::Hasher,
    length: u64,
    record: PackRecord,
}

/// Writes entries into packs: each pack is filled up to [`PACK_TARGET_BYTES`] under `tmp/`,
/// synced and renamed to its name; [`PackWriter::finish`] then syncs the directories, after
/// which the packs may be named by an index.
pub(crate) struct PackWriter {
    repository: Repository,
    tmp: PathBuf,
    prefix: &'static str,
    current: Option<OpenPack>,
    finished: Vec<PackRecord>,
    shards: BTreeSet<PathBuf>,
    created_shard: bool,
    sequence: u32,
}

impl PackWriter {
    /// A writer whose temporary files go in `tmp` (a directory of its own under `tmp/`),
    /// named `<prefix>-<n>`.
    pub(crate) fn new(repository: &Repository, tmp: &Path, prefix: &'static str) -> Self {
        PackWriter {
            repository: repository.clone(),
            tmp: tmp.to_owned(),
            prefix,
            current: None,
            finished: Vec::new(),
            shards: BTreeSet::new(),
            created_shard: false,
            sequence: 0,
        }
    }

    /// Appends an entry (sealed, in an encrypted repository); closes the pack once it reaches
    /// [`PACK_TARGET_BYTES`].
    pub(crate) fn add(&mut self, kind: EntryKind, id: BlobId, bytes: &[u8]) -> Result<()> {
        let sealed = self.repository.seal_object(bytes)?;
        let bytes = &*sealed;
        let pack = match self.current.take() {
            Some(pack) => pack,
            None => self.open()?,
        };
        let pack = self.current.insert(pack);
        pack.file
            .write_all(bytes)
            .map_err(io_error(format!("write {}", pack.path.display())))?;
        pack.hasher.update(bytes);
        let length = bytes.len() as u64;
        pack.record.push(kind, id, pack.length, length);
        pack.length += length;
        if pack.length >= PACK_TARGET_BYTES {
            self.seal()?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<OpenPack> {
        self.sequence += 1;
        let path = self.tmp.join(format!("{}-{}", self.prefix, self.sequence));
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(format!("create {}", path.display())))?;
        Ok(OpenPack {
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: self.repository.object_hasher(),
            length: 0,
            record: PackRecord::default(),
        })
    }

    /// Syncs the open pack and renames it to its name.
    fn seal(&mut self) -> Result<()> {
        let Some(pack) = self.current.take() else {
            return Ok(());
        };
        let action = || format!("write {}", pack.path.display());
        let file = pack
            .file
            .into_inner()
            .map_err(|error| io_error(action())(error.into_error()))?;
        file.sync_all().map_err(io_error(action()))?;
        drop(file);
        let id = BlobId::from_hash(*pack.hasher.finalize().as_bytes());
        let path = self.repository.pack_path(&id);
        if let Some(shard) = path.parent()
            && self.shards.insert(shard.to_owned())
            && !require_dir(shard)?
        {
            create_dir(shard)?;
            self.created_shard = true;
        }
        // The same bytes under the same name: a pack already there is this one.
        std::fs::rename(&pack.path, &path)
            .map_err(io_error(format!("move a pack into {}", path.display())))?;
        let mut record = pack.record;
        record.id = id.to_hex();
        self.finished.push(record);
        Ok(())
    }

    /// Closes the last pack and makes every pack's name durable; returns what the packs hold,
    /// for the index.
    pub(crate) fn finish(mut self) -> Result<Vec<PackRecord>> {
        self.seal()?;
        if self.created_shard {
            sync_dir(&self.repository.packs_dir())?;
        }
        for shard in &self.shards {
            sync_dir(shard)?;
        }
        Ok(self.finished)
    }
}

/// Why an entry cannot be read from its pack.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The pack is not there.
    Missing,
    /// The pack is not a regular file, or too short for the entry.
    Damaged(String),
    /// It could not be read (permissions, I/O): not necessarily damage.
    Unreadable(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("its pack is missing"),
            ReadError::Damaged(detail) => f.write_str(detail),
            ReadError::Unreadable(error) => write!(f, "its pack cannot be read: {error}"),
        }
    }
}

/// Reads entries from packs, keeping the last pack it read open: a reader of a manifest's
/// chunks or of a backup's values, which mostly come one pack after another, opens each pack
/// once instead of once per entry.
#[derive(Debug, Default)]
pub(crate) struct PackReader {
    open: Option<(BlobId, File)>,
}

impl PackReader {
    /// Reads the entry at `location`, refusing one longer than `max_bytes` (plus the
    /// sealing's overhead), and opens it in an encrypted repository.
    pub(crate) fn read(
        &mut self,
        repository: &Repository,
        location: &Location,
        max_bytes: u64,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        let pack = location.pack;
        let max_bytes = max_bytes.saturating_add(repository.sealing_overhead());
        if location.length > max_bytes {
            return Err(ReadError::Damaged(format!(
                "the index gives it {} bytes in pack {pack}, more than it can be ({max_bytes})",
                location.length
            )));
        }
        let file = match &mut self.open {
            Some((open, file)) if *open == pack => file,
            _ => &mut self.open.insert((pack, open_pack(repository, &pack)?)).1,
        };
        let length = usize::try_from(location.length).unwrap_or(usize::MAX);
        let mut bytes = vec![0; length];
        file.seek(SeekFrom::Start(location.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|error| match error.kind() {
                io::ErrorKind::UnexpectedEof => ReadError::Damaged(format!(
                    "pack {pack} is shorter than its index says (truncated?)"
                )),
                _ => ReadError::Unreadable(error),
            })?;
        repository.open_object(bytes).map_err(|error| {
            ReadError::Damaged(format!(
                "its entry at offset {} of pack {pack} {error}",
                location.offset
            ))
        })
    }
}

/// Opens pack `pack`, a regular file in a real directory.
fn open_pack(repository: &Repository, pack: &BlobId) -> std::result::Result<File, ReadError> {
    let path = repository.pack_path(pack);
    if let Some(shard) = path.parent() {
        match std::fs::symlink_metadata(shard) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ReadError::Damaged(format!(
                    "the directory of pack {pack} is not a real directory"
                )));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ReadError::Missing);
            }
            Err(error) => return Err(ReadError::Unreadable(error)),
        }
    }
    open_regular(&path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ReadError::Missing,
        io::ErrorKind::InvalidData => ReadError::Damaged(format!("pack {pack}: {error}")),
        _ => ReadError::Unreadable(error),
    })
}
