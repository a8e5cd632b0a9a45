//! The restore target file: refusing or replacing an existing one, and putting the finished
//! database in place.
//!
//! **Invariant:** the target path only ever receives a complete, verified, checkpointed
//! database, by one rename (or link); with [`IfExists::Refuse`] an existing file is never
//! touched, and with [`IfExists::Replace`] a file some store has open is refused.

use std::io;
use std::path::{Path, PathBuf};

use super::files::{io_error, sync_dir, sync_file};
use super::options::IfExists;
use crate::backend::{database_files, is_in_use};
use crate::error::{Error, Result};

/// Refuses an existing target unless told to replace it, and a target some store has open.
pub(crate) fn check_target(path: &Path, if_exists: IfExists) -> Result<()> {
    let existing: Vec<PathBuf> = database_files(path)
        .into_iter()
        .filter(|file| std::fs::symlink_metadata(file).is_ok())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    match if_exists {
        IfExists::Refuse => Err(target_exists(path)),
        IfExists::Replace if path.exists() && is_in_use(path)? => Err(Error::Io {
            action: format!(
                "replace {}: a store has it open (close it first)",
                path.display()
            ),
            source: io::ErrorKind::ResourceBusy.into(),
        }),
        IfExists::Replace => Ok(()),
    }
}

fn target_exists(path: &Path) -> Error {
    Error::Io {
        action: format!(
            "restore into {}: it exists (restore into a new file, or replace it with \
             IfExists::Replace, --force in the CLI, once no store has it open)",
            path.display()
        ),
        source: io::ErrorKind::AlreadyExists.into(),
    }
}

/// Moves the finished, checkpointed and closed temporary database onto the target.
pub(crate) fn put_in_place(temporary: &Path, path: &Path, if_exists: IfExists) -> Result<()> {
    let [temporary, leftovers @ ..] = database_files(temporary);
    for leftover in leftovers {
        match std::fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(format!("delete {}", leftover.display()))(error)),
        }
    }
    sync_file(&temporary)?;
    match if_exists {
        IfExists::Replace => {
            // An old log or journal left beside the new file would be replayed into it: remove
            // them first.
            let [_, stale_files @ ..] = database_files(path);
            for stale in stale_files {
                match std::fs::remove_file(&stale) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(io_error(format!("delete {}", stale.display()))(error));
                    }
                }
            }
            std::fs::rename(&temporary, path).map_err(io_error(format!(
                "move the restored database to {}",
                path.display()
            )))?;
        }
        IfExists::Refuse => {
            // A link fails if the target appeared meanwhile, where a rename would replace it.
            match std::fs::hard_link(&temporary, path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(target_exists(path));
                }
                Err(_) if !path.exists() => std::fs::rename(&temporary, path).map_err(io_error(
                    format!("move the restored database to {}", path.display()),
                ))?,
                Err(_) => return Err(target_exists(path)),
            }
            if temporary.exists() {
                std::fs::remove_file(&temporary)
                    .map_err(io_error(format!("delete {}", temporary.display())))?;
            }
        }
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(dir)
}
