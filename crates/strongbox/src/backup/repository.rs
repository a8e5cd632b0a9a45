//! [`Repository`]: the backup directory, its layout, its lock and its file-level primitives.
//!
//! **Invariants:** every path is built here, from a parsed [`BlobId`] (re-printed as 64
//! lowercase hex digits) or a validated [`BackupId`]; no string read from a manifest becomes
//! a path. Files are created owner-only (0600), directories 0700. Nothing found in the
//! directory is trusted: every operation checks, once it holds the lock, that `packs/`, `index/`,
//! `manifests/`, `tmp/` and `dictionaries/` are real directories (not links), and reads go
//! through [`super::files`] (regular files only, bounded).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::crypt::Crypt;
use super::files::{
    blocking, create_dir, io_error, kind_name, read_dir, read_regular, require_dir, sync_dir,
    write_durably,
};
use super::id::BackupId;
use super::key::{Encryption, format_version};
use super::lock::{LockWait, acquire};
use super::manifest;
use crate::blob::BlobId;
use crate::codec::Dictionary;
use crate::error::{Error, Result};

/// The file that marks a directory as a repository and gives its format version.
pub(super) const FORMAT_FILE: &str = "strongbox-backup.json";

/// The `format` value of [`FORMAT_FILE`].
const FORMAT_NAME: &str = "strongbox-backup";

/// The largest [`FORMAT_FILE`] read (it holds a few dozen bytes).
const MAX_FORMAT_FILE_BYTES: u64 = 64 << 10;

/// The largest dictionary file read: zstd's trainer writes at most 110 KiB by default, and
/// Strongbox trains at most 32 KiB.
const MAX_DICTIONARY_FILE_BYTES: u64 = 1 << 20;

/// The repository format version this code writes and reads. Version 1 kept one file per
/// value and whole manifests; version 2 keeps values and manifest chunks in packs.
pub const FORMAT_VERSION: u32 = 2;

/// Entries a repository directory may hold besides the format file (before it is written, a
/// directory holding only these is an unfinished repository, which `open_or_create` finishes).
const LAYOUT: [&str; 6] = ["packs", "index", "manifests", "tmp", "dictionaries", "lock"];

/// The contents of [`FORMAT_FILE`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FormatFile {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
}

/// A backup repository: a directory holding every unique blob once and one manifest per
/// backup. See `docs/backup-format.md` for the format, and [`crate::backup`] for what the
/// operations guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub(super) dir: PathBuf,
    /// How calls wait for the lock ([`super::lock`]).
    pub(super) lock_wait: LockWait,
    pub(super) crypt: Option<Arc<Crypt>>,
    /// The chunk index last loaded, shared by this handle's clones.
    pub(super) chunk_index: super::chunk_index::ChunkIndexCache,
}

/// How a repository lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Backup, list, verify, restore: they only add files or read.
    Shared,
    /// Prune: it deletes files.
    Exclusive,
}

/// A held repository lock, released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct RepositoryLock {
    _file: File,
}

/// One backup as [`Repository::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupInfo {
    /// The backup's id, which sorts by creation time.
    pub id: BackupId,
    /// When the backup was taken, in milliseconds since the Unix epoch (from the id, to the
    /// second, when the manifest cannot be read).
    pub created_at_ms: i64,
    /// The store it was taken from: a file path or a redacted `postgres://` URL (empty when
    /// the manifest cannot be read).
    pub source: String,
    /// Records in the backup.
    pub records: u64,
    /// Unique blobs the backup refers to.
    pub blobs: u64,
    /// Serialized size of every record's value, counting shared values once per record.
    pub logical_bytes: u64,
    /// Size of the manifest file, in bytes.
    pub manifest_bytes: u64,
    /// Why the manifest cannot be read, when it cannot; such a backup cannot be restored.
    pub damage: Option<String>,
    /// For a differential backup, the whole backup it holds the changes since (prune keeps
    /// it while this one is kept); `None` for a whole backup.
    pub base: Option<BackupId>,
}

impl Repository {
    /// Opens the repository in `dir`, creating the directory and an empty repository if it
    /// does not exist or is empty.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when `dir` holds something else or a repository of a newer
    /// format, `Error::RepositoryKey` when it is encrypted ([`Repository::open_with_key`]),
    /// `Error::Io` when it cannot be created or read.
    ///
    /// # Cancel safety
    /// Cancel safe: an interrupted creation is finished by the next call.
    pub async fn open_or_create(dir: impl Into<PathBuf>) -> Result<Self> {
        let repository = Repository::plain(dir.into());
        let opened = repository.clone();
        blocking(move || {
            opened.create_if_new(None)?;
            opened.require_plain()
        })
        .await?;
        Ok(repository)
    }

    /// Opens the existing repository in `dir`.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when `dir` is not a repository or has a newer format,
    /// `Error::RepositoryKey` when it is encrypted ([`Repository::open_with_key`]), `Error::Io`
    /// when it cannot be read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let repository = Repository::plain(dir.into());
        let opened = repository.clone();
        blocking(move || opened.require_plain()).await?;
        Ok(repository)
    }

    /// The repository's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every backup, oldest first. A backup whose manifest cannot be read is listed with the
    /// reason in `damage`, so one bad file never hides the others.
    ///
    /// # Errors
    /// `Error::Io` when the directory cannot be read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn list(&self) -> Result<Vec<BackupInfo>> {
        let repository = self.clone();
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let mut infos: Vec<BackupInfo> = repository
                .manifest_ids()?
                .into_iter()
                .map(|id| repository.info(id))
                .collect();
            infos.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            Ok(infos)
        })
        .await
    }

    pub(super) fn create_if_new(&self, encryption: Option<Encryption>) -> Result<()> {
        match fs::read_dir(&self.dir) {
            Ok(entries) => {
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(io_error(format!("list {}", self.dir.display())))?;
                    names.push(entry.file_name());
                }
                if names.iter().any(|name| name == FORMAT_FILE) {
                    return Ok(());
                }
                if names
                    .iter()
                    .any(|name| !LAYOUT.iter().any(|known| name == *known))
                {
                    return Err(Error::InvalidConfig(format!(
                        "{} holds files but is not a Strongbox backup repository; choose a new or \
                         empty directory",
                        self.dir.display()
                    )));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(io_error(format!("create {}", self.dir.display())))?;
            }
            Err(error) => return Err(io_error(format!("open {}", self.dir.display()))(error)),
        }
        for dir in [
            self.packs_dir(),
            self.index_dir(),
            self.manifests_dir(),
            self.tmp_dir(),
        ] {
            create_dir(&dir)?;
        }
        self.lock_file()?;
        let is_encrypted = encryption.is_some();
        let format = serde_json::to_vec_pretty(&FormatFile {
            format: FORMAT_NAME.to_owned(),
            version: format_version(encryption.as_ref()),
            encryption,
        })
        .map_err(|error| Error::backend("encode the repository format file", error))?;
        // The format file comes last: a directory is a repository only once it exists. It is
        // linked into place, never renamed over one that another process linked meanwhile
        // (an encrypted repository's holds its key).
        let temporary = self
            .tmp_dir()
            .join(format!("{FORMAT_FILE}.{:08x}", super::id::random_u32()));
        write_durably(&temporary, &format)?;
        let path = self.dir.join(FORMAT_FILE);
        let linked = fs::hard_link(&temporary, &path);
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => sync_dir(&self.dir),
            // Another process made it a repository meanwhile: a plain one is this one.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && !is_encrypted => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::InvalidConfig(format!(
                    "{} was made a backup repository by another process meanwhile; open it",
                    self.dir.display()
                )))
            }
            Err(error) => Err(io_error(format!("create {}", path.display()))(error)),
        }
    }

    /// Checks the format file; returns its encryption record, if the repository is encrypted.
    pub(super) fn check_format(&self) -> Result<Option<Encryption>> {
        let path = self.dir.join(FORMAT_FILE);
        let read = read_regular(&path, MAX_FORMAT_FILE_BYTES);
        let bytes = read.map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => Error::InvalidConfig(format!(
                "{} is not a Strongbox backup repository (it has no {FORMAT_FILE}); create one \
                 with open_or_create",
                self.dir.display()
            )),
            _ => io_error(format!("read {}", path.display()))(error),
        })?;
        let format: FormatFile = serde_json::from_slice(&bytes).map_err(|error| {
            Error::InvalidConfig(format!(
                "{} is not a Strongbox backup repository format file ({error})",
                path.display()
            ))
        })?;
        if format.format != FORMAT_NAME || format.version == 0 {
            return Err(Error::InvalidConfig(format!(
                "{} is not a Strongbox backup repository format file",
                path.display()
            )));
        }
        let known = format_version(format.encryption.as_ref());
        if format.version < FORMAT_VERSION {
            return Err(Error::InvalidConfig(format!(
                "the backup repository {} has format version {}, which this Strongbox no longer \
                 reads (it keeps values in packs since version {FORMAT_VERSION}); create a new \
                 repository and keep this one to restore with the Strongbox that wrote it",
                self.dir.display(),
                format.version
            )));
        }
        if format.version != known {
            return Err(Error::InvalidConfig(format!(
                "the backup repository {} has format version {}, newer than this Strongbox \
                 understands ({known}); upgrade Strongbox",
                self.dir.display(),
                format.version
            )));
        }
        Ok(format.encryption)
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.dir.join("packs")
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.dir.join("index")
    }

    pub(crate) fn manifests_dir(&self) -> PathBuf {
        self.dir.join("manifests")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub(crate) fn dictionaries_dir(&self) -> PathBuf {
        self.dir.join("dictionaries")
    }

    /// `dictionaries/<8 hex digits>`.
    pub(crate) fn dictionary_path(&self, id: u32) -> PathBuf {
        self.dictionaries_dir().join(self.dictionary_name(id))
    }

    /// Stores a dictionary unless the repository has it: written under `tmp/`, synced, renamed
    /// into place, like a blob.
    pub(crate) fn write_dictionary(&self, id: u32, bytes: &[u8]) -> Result<()> {
        let path = self.dictionary_path(id);
        // Only a regular file counts; anything else there is replaced (a link, not its target).
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file()) {
            return Ok(());
        }
        create_dir(&self.dictionaries_dir())?;
        let temporary = self
            .tmp_dir()
            .join(format!("dictionary-{id:08x}-{}", std::process::id()));
        write_durably(&temporary, &self.seal_object(bytes)?)?;
        fs::rename(&temporary, &path).map_err(io_error(format!("move {}", path.display())))?;
        sync_dir(&self.dictionaries_dir())
    }

    /// Loads the dictionaries a manifest names, each checked against its id.
    ///
    /// # Errors
    /// `Error::Corrupt` when one is missing, unreadable or not the dictionary its name says.
    pub(crate) fn read_dictionaries(
        &self,
        backup: &BackupId,
        refs: &[manifest::DictionaryRef],
    ) -> Result<HashMap<u32, Arc<Dictionary>>> {
        let corrupt = |detail: String| Error::Corrupt {
            collection: None,
            key: None,
            detail: format!("backup {backup}: {detail}"),
        };
        let mut dictionaries = HashMap::new();
        for dictionary in refs {
            let id = dictionary.parse_id().ok_or_else(|| {
                corrupt(format!(
                    "the manifest names a dictionary {:?}",
                    dictionary.id
                ))
            })?;
            let path = self.dictionary_path(id);
            let bytes = read_regular(&path, MAX_DICTIONARY_FILE_BYTES)
                .map_err(|error| error.to_string())
                .and_then(|sealed| self.open_object(sealed))
                .map_err(|error| corrupt(format!("dictionary {id:08x} cannot be read: {error}")))?;
            let loaded = Dictionary::new(bytes, 3)
                .map_err(|error| corrupt(format!("dictionary {id:08x} is damaged: {error}")))?;
            if loaded.id() != id {
                return Err(corrupt(format!(
                    "dictionary file {id:08x} holds dictionary {:08x}",
                    loaded.id()
                )));
            }
            dictionaries.insert(id, Arc::new(loaded));
        }
        Ok(dictionaries)
    }

    /// `packs/<first two hex digits>/<64 hex digits>`.
    pub(crate) fn pack_path(&self, pack_id: &BlobId) -> PathBuf {
        let hex = pack_id.to_hex();
        self.packs_dir()
            .join(hex.get(..2).unwrap_or("00"))
            .join(hex)
    }

    /// `manifests/<id>.jsonl.zst`.
    pub(crate) fn manifest_path(&self, id: &BackupId) -> PathBuf {
        self.manifests_dir()
            .join(format!("{id}{}", manifest::EXTENSION))
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let not_a_file = |kind: &str| Error::Corrupt {
            collection: None,
            key: None,
            detail: format!(
                "{} is a {kind}, not a regular file: a backup repository never follows links \
                 nor uses special files (delete it; the next command recreates it)",
                path.display()
            ),
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => return Err(not_a_file(kind_name(meta.file_type()))),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(format!("open {}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(io_error(format!("inspect {}", path.display())))?;
        if !meta.is_file() {
            return Err(not_a_file(kind_name(meta.file_type())));
        }
        Ok(file)
    }

    /// Takes the repository lock, waiting for it (a prune waits for running backups, a
    /// backup for a running prune) as [`super::lock`] says, then checks the layout.
    ///
    /// # Errors
    /// `Error::LockTimeout` when the lock stayed held past the repository's lock timeout.
    /// `Error::Corrupt` naming the path when `packs/`, `index/`, `manifests/`, `tmp/` or
    /// `dictionaries/` is a link or not a directory: no operation reads, writes or deletes
    /// through it.
    pub(crate) fn lock(&self, mode: LockMode) -> Result<RepositoryLock> {
        let file = self.lock_file()?;
        acquire(&file, mode, &self.lock_wait, &self.dir)?;
        let lock = RepositoryLock { _file: file };
        for dir in [
            self.packs_dir(),
            self.index_dir(),
            self.manifests_dir(),
            self.tmp_dir(),
            self.dictionaries_dir(),
        ] {
            require_dir(&dir)?;
        }
        Ok(lock)
    }

    /// Calls `visit` with every pack file's id and path; entries whose names are not pack
    /// ids, or that are not regular files, are skipped, as are shards that are not real
    /// directories: a link planted in the repository is never followed.
    pub(crate) fn for_each_pack(
        &self,
        mut visit: impl FnMut(BlobId, PathBuf) -> Result<()>,
    ) -> Result<()> {
        for (shard, file_type) in read_dir(&self.packs_dir())? {
            if !file_type.is_dir() {
                continue;
            }
            for (path, file_type) in read_dir(&shard)? {
                if !file_type.is_file() {
                    continue;
                }
                let pack_id = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .filter(|name| name.len() == 64)
                    .and_then(BlobId::from_hex);
                if let Some(pack_id) = pack_id {
                    visit(pack_id, path)?;
                }
            }
        }
        Ok(())
    }

    /// The ids of the manifests in `manifests/`, in id order; other files are skipped.
    pub(crate) fn manifest_ids(&self) -> Result<Vec<BackupId>> {
        let mut ids: Vec<BackupId> = read_dir(&self.manifests_dir())?
            .iter()
            .filter_map(|(path, _)| {
                path.file_name()?
                    .to_str()?
                    .strip_suffix(manifest::EXTENSION)
            })
            .filter_map(|name| BackupId::parse(name).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}
