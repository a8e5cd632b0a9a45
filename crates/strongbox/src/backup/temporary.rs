//! The temporary database a restore into a file builds beside its target, and removing those
//! that killed restores left.
//!
//! A restore into `dir/name` builds `dir/.name.restore-<8 hex digits>` (with SQLite's `-wal`
//! and `-shm` files), and first creates `dir/.name.restore-<same digits>.lock`, on which it
//! holds an exclusive `flock` until it has renamed the database into place or deleted it; the
//! lock file goes last. A restore killed on the way (SIGKILL, power loss) leaves these files,
//! and the lock is released with its process.
//!
//! **Invariant:** [`remove_abandoned`], which every restore into a file runs first, deletes
//! only what it can prove is a restore's and abandoned: regular files (never a link, nor what
//! it points at) named exactly as above for the same target, whose lock file it could lock
//! itself; or, with no lock file (left by an older Strongbox), a database that no process has
//! open (`backend::is_in_use`). Anything else is left alone.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::files::io_error;
use super::id::random_u32;
use crate::backend::{COMPANION_SUFFIXES, is_in_use};
use crate::error::Result;

/// What follows `.restore-<digits>` in the names of a restore's database files: nothing for
/// the database, then its engine's companions. The lock file adds `.lock`.
fn database_suffixes() -> impl Iterator<Item = &'static str> {
    std::iter::once("").chain(COMPANION_SUFFIXES)
}

/// A restore's temporary database, reserved by its held lock file. Dropping it deletes the
/// database's files (whatever of them is still there), then the lock file.
#[derive(Debug)]
pub(crate) struct Temporary {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl Temporary {
    /// Reserves a new temporary name beside `target`.
    ///
    /// # Errors
    /// `Error::Io` when the lock file cannot be created in the target's directory.
    pub(crate) fn create(target: &Path) -> Result<Self> {
        for _ in 0..16 {
            let path = temporary_path(target, &format!("{:08x}", random_u32()));
            let lock_path = with_suffix(&path, ".lock");
            let lock = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&lock_path)
            {
                Ok(lock) => lock,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(io_error(format!("create {}", lock_path.display()))(error));
                }
            };
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(error)) => {
                    return Err(io_error(format!("lock {}", lock_path.display()))(error));
                }
            }
            // Another restore's cleanup may have taken the new file for an abandoned one and
            // deleted it before it was locked: then it is not ours any more.
            let is_ours = same_file(&lock, &lock_path);
            let is_free = fs::symlink_metadata(&path).is_err();
            if is_ours && is_free {
                return Ok(Temporary {
                    path,
                    lock_path,
                    _lock: lock,
                });
            }
            if is_ours {
                let _ = fs::remove_file(&lock_path);
            }
        }
        Err(io_error(format!(
            "choose a temporary name beside {}",
            target.display()
        ))(io::ErrorKind::AlreadyExists.into()))
    }

    /// The temporary database's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        for suffix in database_suffixes() {
            let file = with_suffix(&self.path, suffix);
            if let Err(error) = fs::remove_file(&file)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(%error, file = %file.display(), "could not delete a restore's temporary file");
            }
        }
        // Last, while still locked: the name stays reserved until the database is gone.
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// `dir/.name.restore-<digits>` for the target `dir/name`.
fn temporary_path(target: &Path, digits: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or_else(|| "strongbox".as_ref()));
    name.push(".restore-");
    name.push(digits);
    target.with_file_name(name)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether the open `file` is still the one named `path`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Deletes the files that killed restores into `target` left beside it, when they are
/// provably abandoned (see the module's invariant); returns how many were deleted. Best effort:
/// what cannot be checked or deleted is left, with a warning.
pub(crate) fn remove_abandoned(target: &Path) -> u64 {
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let prefix = temporary_path(target, "")
        .file_name()
        .map(|name| name.as_bytes().to_vec())
        .unwrap_or_default();
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    // The 8-digit names with at least one of their files present as a regular file.
    let mut groups: BTreeSet<String> = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().into_vec();
        let Some(rest) = name.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let (digits, suffix) = rest.split_at(rest.len().min(8));
        let is_digits = digits.len() == 8
            && digits
                .iter()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte));
        let is_known = database_suffixes()
            .chain([".lock"])
            .any(|known| known.as_bytes() == suffix);
        // `DirEntry::file_type` does not follow links: a link is never ours.
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if is_digits && is_known && is_file {
            groups.insert(String::from_utf8_lossy(digits).into_owned());
        }
    }
    let mut removed = 0;
    for digits in groups {
        let path = temporary_path(target, &digits);
        if let Some(count) = remove_if_abandoned(&path) {
            removed += count;
            tracing::info!(file = %path.display(), "deleted what an interrupted restore left");
        }
    }
    removed
}

/// Deletes the files of the temporary database `path` if it is abandoned; returns how many,
/// or `None` when it is (or may be) in use.
fn remove_if_abandoned(path: &Path) -> Option<u64> {
    let lock_path = with_suffix(path, ".lock");
    // Looked at again now: a restore creates its lock file before its database, so a listing
    // may show a new database without its lock file.
    let lock = match fs::symlink_metadata(&lock_path) {
        Ok(meta) if meta.is_file() => {
            let lock = File::open(&lock_path).ok()?;
            lock.try_lock().ok()?;
            if !same_file(&lock, &lock_path) {
                return None;
            }
            Some(lock)
        }
        Ok(_) => return None,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // Left by a Strongbox without lock files: abandoned only if no process has it open.
            match fs::symlink_metadata(path) {
                Ok(meta) if meta.is_file() => match is_in_use(path) {
                    Ok(false) => {}
                    Ok(true) | Err(_) => return None,
                },
                Ok(_) => return None,
                // Companions without their database are of no use to anyone.
                Err(_) => {}
            }
            None
        }
        Err(_) => return None,
    };
    let mut removed = 0;
    for suffix in database_suffixes() {
        let file = with_suffix(path, suffix);
        // Only regular files, looked at again just before.
        if !fs::symlink_metadata(&file).is_ok_and(|meta| meta.is_file()) {
            continue;
        }
        match fs::remove_file(&file) {
            Ok(()) => removed += 1,
            Err(error) => {
                tracing::warn!(%error, file = %file.display(), "could not delete what an interrupted restore left");
                return None;
            }
        }
    }
    // Last, while holding it: the name stays reserved until the database is gone.
    if lock.is_some() {
        match fs::remove_file(&lock_path) {
            Ok(()) => removed += 1,
            Err(error) => {
                tracing::warn!(%error, file = %lock_path.display(), "could not delete what an interrupted restore left");
            }
        }
    }
    Some(removed)
}
