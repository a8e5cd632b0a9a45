//! The database file and its companions: creating a new store aside and linking it into
//! place, the files a store consists of, and whether another process has it open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::convert::map_err;
use super::schema;
use crate::config::Config;
use crate::error::{Error, Result};

/// Creates a new, empty store at `config.path` if nothing is there (and creation is allowed).
///
/// The database is built under a temporary name beside it (owner-only, mode 0600), with its
/// schema, closed, synced, and then hard-linked into place, which fails if another process got
/// there first (its store is then used). So a file at the path is never a half-created store,
/// and an empty or foreign file found there can be refused as what it is.
pub(super) fn create_database(config: &Config) -> Result<()> {
    let path = &config.path;
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                action: format!("look for the database {}", path.display()),
                source,
            });
        }
    }
    if !config.create_if_missing {
        return Err(no_database(path));
    }
    let name = path.file_name().ok_or_else(|| {
        Error::InvalidConfig(format!("path {} does not name a file", path.display()))
    })?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".new-{}-{nanos}", std::process::id()));
    let temporary = directory.join(temporary_name);
    let built = build_new_database(&temporary).and_then(|()| {
        match std::fs::hard_link(&temporary, path) {
            Ok(()) => sync_directory(&directory),
            // Another process created the store meanwhile: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(Error::Io {
                action: format!("create the database file {}", path.display()),
                source,
            }),
        }
    });
    for file in database_files(&temporary) {
        let _ = std::fs::remove_file(file);
    }
    built
}

/// Writes a new store's schema into a new file at `path` and syncs it.
fn build_new_database(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            action: format!("create the database file {}", path.display()),
            source,
        })?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err(format!("open {}", path.display())))?;
    set_new_file_layout(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_err("switch the new database to WAL mode"))?;
    schema::migrate(&mut conn, true)?;
    conn.close()
        .map_err(|(_, error)| map_err("close the new database")(error))?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::Io {
            action: format!("sync the new database {}", path.display()),
            source,
        })
}

/// Settings that only take effect in a file without tables.
pub(super) fn set_new_file_layout(conn: &Connection) -> Result<()> {
    // Lets maintenance reclaim space incrementally.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(map_err("set auto_vacuum"))
}

/// Makes a new directory entry durable.
fn sync_directory(directory: &Path) -> Result<()> {
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| Error::Io {
            action: format!("sync the directory {}", directory.display()),
            source,
        })
}

pub(super) fn no_database(path: &Path) -> Error {
    Error::Io {
        action: format!(
            "open the database {}: there is none (create it by writing to it, for example with \
             `strongbox put` or `strongbox import`)",
            path.display()
        ),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

/// Opens a connection through `vfs` (SQLite's default when `None`).
pub(super) fn open_connection(
    path: &Path,
    flags: OpenFlags,
    vfs: Option<&str>,
) -> rusqlite::Result<Connection> {
    match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
}

/// What SQLite appends to a database's name for the files it keeps beside it: the write-ahead
/// log, its shared-memory index, and a rollback journal.
pub const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The files an SQLite database at `path` consists of: the database, then its `-wal`, `-shm`
/// and `-journal` companions (which may not exist).
pub fn database_files(path: &Path) -> [PathBuf; 4] {
    let companion = |suffix: &str| {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        PathBuf::from(file)
    };
    let [wal, shm, journal] = COMPANION_SUFFIXES.map(companion);
    [path.to_owned(), wal, shm, journal]
}

/// Whether some connection, in this process or another, has the database file open, so
/// that replacing the file would pull it from under a running store. A file that is not a
/// database is not in use.
///
/// # Errors
/// `Error::Backend` when the file cannot be probed.
pub fn is_in_use(path: &Path) -> Result<bool> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err(format!(
        "open {} to check it is unused",
        path.display()
    )))?;
    // Every connection of a WAL database holds a shared lock on the file for as long as it
    // is open; an exclusive transaction in exclusive locking mode needs all of them gone.
    let probe = conn
        .pragma_update(None, "locking_mode", "EXCLUSIVE")
        .and_then(|()| {
            conn.execute_batch("BEGIN EXCLUSIVE; SELECT count(*) FROM sqlite_master; COMMIT")
        });
    match probe {
        Ok(()) => Ok(false),
        Err(error) => match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Ok(true),
            Some(ErrorCode::NotADatabase) => Ok(false),
            _ => Err(map_err(format!("check that {} is unused", path.display()))(
                error,
            )),
        },
    }
}
