//! The newest backup: how old it is, for the `strongbox_backup_age_seconds` gauge, and which
//! one `BackupRef::Latest` and `BackupRef::At` name; and what `list` shows of each backup.
//!
//! Only the manifests' headers are read, so that finding a backup costs small reads however
//! large the backups are (a whole read is `verify`'s job).

use std::{fs, io};

use super::Repository;
use super::files::blocking;
use super::id::BackupId;
use super::manifest::{ManifestReader, ManifestSummary, read_summary};
use super::repository::{BackupInfo, LockMode};
use crate::error::{Error, Result};

impl Repository {
    /// When the newest backup whose manifest opens was taken, in milliseconds since the Unix
    /// epoch; `None` when the repository holds no such backup.
    ///
    /// # Errors
    /// `Error::Io` when the directory cannot be read, `Error::Corrupt` when its layout is
    /// damaged.
    pub(crate) async fn newest_backup_ms(&self) -> Result<Option<i64>> {
        let repository = self.clone();
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let newest = repository
                .manifest_ids()?
                .iter()
                .rev()
                .find_map(|id| ManifestReader::open(&repository, id).ok())
                .map(|reader| reader.header().created_at_ms);
            Ok(newest)
        })
        .await
    }
}

impl Repository {
    /// The newest backup taken at or before `at_ms` whose manifest can be read (the caller
    /// holds the lock).
    ///
    /// # Errors
    /// `Error::Io` (not found) when the repository holds no backup, or none that early;
    /// `Error::Corrupt` when no manifest can be read.
    pub(crate) fn newest_at(&self, at_ms: i64) -> Result<BackupId> {
        let ids = self.manifest_ids()?;
        let not_found = |what: String| Error::Io {
            action: format!(
                "find a backup to restore in {}: {what}",
                self.dir().display()
            ),
            source: io::ErrorKind::NotFound.into(),
        };
        if ids.is_empty() {
            return Err(not_found("it holds none".to_owned()));
        }
        let readable: Vec<(i64, BackupId)> = ids
            .into_iter()
            .filter_map(|id| {
                let summary = read_summary(self, &id).ok()?;
                Some((summary.header.created_at_ms, id))
            })
            .collect();
        if readable.is_empty() {
            return Err(Error::Corrupt {
                collection: None,
                key: None,
                detail: format!(
                    "no backup in {} has a readable manifest (see the verify report)",
                    self.dir().display()
                ),
            });
        }
        let oldest = readable.iter().map(|(at, _)| *at).min().unwrap_or(0);
        readable
            .into_iter()
            .filter(|(at, _)| *at <= at_ms)
            .max()
            .map(|(_, id)| id)
            .ok_or_else(|| {
                not_found(format!(
                    "none was taken at or before {at_ms} ms since the Unix epoch (the oldest \
                     is from {oldest} ms)"
                ))
            })
    }

    /// The [`BackupInfo`] of one backup, with the damage found if its manifest is unreadable.
    pub(crate) fn info(&self, id: BackupId) -> BackupInfo {
        let manifest_bytes =
            fs::symlink_metadata(self.manifest_path(&id)).map_or(0, |meta| meta.len());
        match read_summary(self, &id) {
            Ok(ManifestSummary { header, trailer }) => BackupInfo {
                id,
                created_at_ms: header.created_at_ms,
                source: header.source.location,
                records: trailer.records,
                blobs: trailer.blobs,
                logical_bytes: trailer.logical_bytes,
                manifest_bytes,
                damage: None,
                base: header.base.and_then(|base| BackupId::parse(&base).ok()),
            },
            Err(error) => BackupInfo {
                created_at_ms: id.time_ms(),
                id,
                source: String::new(),
                records: 0,
                blobs: 0,
                logical_bytes: 0,
                manifest_bytes,
                damage: Some(error.to_string()),
                base: None,
            },
        }
    }
}
