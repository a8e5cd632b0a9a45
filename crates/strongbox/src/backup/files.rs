//! File primitives that trust nothing found in a repository: no link is followed, no special
//! file is opened, and every read has a bound.
//!
//! **Invariant:** a file is only opened for reading once `symlink_metadata` says it is a
//! regular file, and the opened file is checked again (`metadata().is_file()`), so a FIFO or
//! device planted under a repository name is an error for that file, never a hang or an
//! endless read. (Between the two checks a planted FIFO could still be swapped in; opening
//! with `O_NONBLOCK` would close that window but needs `libc`, which this crate does not use.)
//! Directories are listed only when they are real directories, and listings report each
//! entry's own type, so that deletes act on links themselves, never on what they point at.

use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Runs blocking file work off the async runtime.
pub(crate) async fn blocking<T, F>(job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|join_error| Error::backend("run a backup step", join_error.to_string()))?
}

/// Turns an I/O error into `Error::Io` (or `Error::StorageFull` for a full disk).
pub(crate) fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let action = action.into();
    move |source| match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::StorageFull { action },
        _ => Error::Io { action, source },
    }
}

/// What a file type is, for messages.
pub(crate) fn kind_name(file_type: FileType) -> &'static str {
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// The error for a path of the repository layout that is not a real directory.
pub(crate) fn not_a_directory(path: &Path, file_type: FileType) -> Error {
    Error::Corrupt {
        collection: None,
        key: None,
        detail: format!(
            "{} is a {}, not a directory: a backup repository never follows links nor uses \
             special files (replace it with a real directory)",
            path.display(),
            kind_name(file_type)
        ),
    }
}

/// Whether `path` is a real directory (`false`: it does not exist).
///
/// # Errors
/// `Error::Corrupt` naming the path when it is anything else, a link to a directory included.
pub(crate) fn require_dir(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) => Err(not_a_directory(path, meta.file_type())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error(format!("inspect {}", path.display()))(error)),
    }
}

/// The error for a file that is not a regular file; `InvalidData`, so that callers can tell it
/// from a missing or unreadable file.
fn not_regular(file_type: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "it is a {}, not a regular file (links and special files are never opened)",
            kind_name(file_type)
        ),
    )
}

/// Opens a regular file for reading, refusing links and special files without opening them.
///
/// # Errors
/// `NotFound` when it does not exist, `InvalidData` when it is not a regular file.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let file = File::open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() {
        return Err(not_regular(opened.file_type()));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `max_bytes`.
///
/// # Errors
/// As [`open_regular`], and `InvalidData` when the file is larger than `max_bytes`.
pub(crate) fn read_regular(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is {size} bytes, more than the {max_bytes} it can be"),
        )
    };
    let size = file.metadata()?.len();
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow after the size was read: the bound holds whatever it does.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Creates a directory, owner-only, if it does not exist.
///
/// # Errors
/// `Error::Corrupt` when something other than a real directory has that name.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => require_dir(path).map(|_| ()),
        Err(error) => Err(io_error(format!("create {}", path.display()))(error)),
    }
}

/// Creates a new owner-only file (failing if anything is at `path`).
fn create_new_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(format!("create {}", path.display())))
}

/// Creates a new owner-only file holding `bytes` (replacing one of its own making), and syncs
/// it. Only used under `tmp/`, after the repository layout was checked.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    // A file or link left there goes (the link itself); a directory makes the creation fail.
    if fs::symlink_metadata(path).is_ok_and(|meta| !meta.is_dir()) {
        fs::remove_file(path).map_err(io_error(format!("replace {}", path.display())))?;
    }
    let mut file = create_new_private(path)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(format!("write {}", path.display())))
}

/// Syncs a file of our own making to disk.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    open_regular(path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(format!("sync {}", path.display())))
}

/// Syncs a directory, so that the names created, renamed or removed in it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(format!("sync the directory {}", path.display())))
}

/// The entries of a real directory with their own types (a link is reported as a link); none
/// when it does not exist.
///
/// # Errors
/// `Error::Corrupt` when `path` is a link or not a directory, `Error::Io` when it cannot be
/// listed.
pub(crate) fn read_dir(path: &Path) -> Result<Vec<(PathBuf, FileType)>> {
    if !require_dir(path)? {
        return Ok(Vec::new());
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(format!("list {}", path.display()))(error)),
    };
    entries
        .map(|entry| {
            // `DirEntry::file_type` does not follow links.
            entry
                .and_then(|entry| Ok((entry.path(), entry.file_type()?)))
                .map_err(io_error(format!("list {}", path.display())))
        })
        .collect()
}
