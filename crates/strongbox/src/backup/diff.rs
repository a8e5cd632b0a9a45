//! [`Repository::diff`]: the records two backups differ by.
//!
//! Both manifests list their records in (collection, key) byte order (the reader refuses one
//! that does not), so the diff reads them side by side, one record of each at a time, like a
//! merge: its memory does not grow with the backups.

use std::cmp::Ordering;

use futures_util::stream::BoxStream;

use super::browse::{BackupRecord, produce};
use super::manifest::{Entry, ManifestReader};
use super::options::BackupRef;
use crate::error::Result;

/// How a record differs between two backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DiffKind {
    /// Only the second backup holds the key.
    Added,
    /// Only the first backup holds the key.
    Removed,
    /// Both hold the key, with another version, value or expiry.
    Changed,
}

impl DiffKind {
    /// `+`, `-` or `M`, as `diff` and restic print them.
    pub fn symbol(self) -> char {
        match self {
            DiffKind::Added => '+',
            DiffKind::Removed => '-',
            DiffKind::Changed => 'M',
        }
    }
}

/// A record that differs between two backups, as [`Repository::diff`](super::Repository::diff) streams it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordDiff {
    /// How it differs.
    pub kind: DiffKind,
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// The record in the first backup (`None` when added).
    pub before: Option<BackupRecord>,
    /// The record in the second backup (`None` when removed).
    pub after: Option<BackupRecord>,
}

impl super::Repository {
    /// The records that differ from backup `from` to backup `to`, in (collection, key) byte
    /// order: added, removed, and changed (the same key with another version, value or
    /// expiry). Both manifests are streamed side by side on a blocking thread that holds the
    /// lock shared, never loaded whole.
    ///
    /// # Errors
    /// As items of the stream: `Error::Io` when a backup does not exist, `Error::Corrupt` for
    /// a damaged manifest (after the differences found before the damage),
    /// `Error::LockTimeout` when a prune holds the lock too long.
    ///
    /// # Cancel safety
    /// Dropping the stream stops the reading thread and releases the lock.
    pub fn diff(&self, from: &BackupRef, to: &BackupRef) -> BoxStream<'static, Result<RecordDiff>> {
        let (from, to) = (from.clone(), to.clone());
        produce(self, move |repository, send| {
            let from = repository.resolve(&from)?;
            let to = repository.resolve(&to)?;
            let mut before = ManifestReader::open(repository, &from)?;
            let mut after = ManifestReader::open(repository, &to)?;
            let mut old = before.next_entry()?;
            let mut new = after.next_entry()?;
            loop {
                let order = match (&old, &new) {
                    (None, None) => return Ok(()),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(old), Some(new)) => name(old).cmp(&name(new)),
                };
                match order {
                    Ordering::Less => {
                        if let Some(entry) = old.take() {
                            send(removed(&entry))?;
                        }
                        old = before.next_entry()?;
                    }
                    Ordering::Greater => {
                        if let Some(entry) = new.take() {
                            send(added(&entry))?;
                        }
                        new = after.next_entry()?;
                    }
                    Ordering::Equal => {
                        if let (Some(was), Some(is)) = (old.take(), new.take())
                            && is_changed(&was, &is)
                        {
                            send(changed(&was, &is))?;
                        }
                        old = before.next_entry()?;
                        new = after.next_entry()?;
                    }
                }
            }
        })
    }
}

/// The order of manifests: collection, then key, by bytes.
fn name(entry: &Entry) -> (&[u8], &[u8]) {
    (entry.collection.as_bytes(), entry.key.as_bytes())
}

fn is_changed(was: &Entry, is: &Entry) -> bool {
    was.blob_id != is.blob_id
        || was.format != is.format
        || was.meta.version != is.meta.version
        || was.meta.expires_at_ms != is.meta.expires_at_ms
}

fn added(entry: &Entry) -> RecordDiff {
    RecordDiff {
        kind: DiffKind::Added,
        collection: entry.collection.clone(),
        key: entry.key.clone(),
        before: None,
        after: Some(BackupRecord::of(entry)),
    }
}

fn removed(entry: &Entry) -> RecordDiff {
    RecordDiff {
        kind: DiffKind::Removed,
        collection: entry.collection.clone(),
        key: entry.key.clone(),
        before: Some(BackupRecord::of(entry)),
        after: None,
    }
}

fn changed(was: &Entry, is: &Entry) -> RecordDiff {
    RecordDiff {
        kind: DiffKind::Changed,
        collection: is.collection.clone(),
        key: is.key.clone(),
        before: Some(BackupRecord::of(was)),
        after: Some(BackupRecord::of(is)),
    }
}
