//! What [`Repository::restore`](super::Repository::restore) is asked and what it reports:
//! [`BackupRef`], [`RestoreOptions`] with [`IfExists`], and [`RestoreSummary`].

use std::fmt;
use std::str::FromStr;

use super::id::BackupId;
use crate::error::{Error, Result};

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupRef {
    /// The newest backup whose manifest can be read.
    Latest,
    /// This backup.
    Id(BackupId),
    /// The newest backup of the state committed at or before this instant, in milliseconds
    /// since the Unix epoch (point in time): a backup's instant is when its snapshot was
    /// taken, or for a `backup follow` backup the commit time of the newest change it holds.
    /// With `follow` running every few seconds, the state restored is at most that far
    /// before the instant.
    At(i64),
}

impl FromStr for BackupRef {
    type Err = Error;

    /// `latest` or a backup id.
    fn from_str(text: &str) -> Result<Self> {
        if text == "latest" {
            Ok(BackupRef::Latest)
        } else {
            BackupId::parse(text).map(BackupRef::Id)
        }
    }
}

impl fmt::Display for BackupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupRef::Latest => f.write_str("latest"),
            BackupRef::Id(id) => id.fmt(f),
            BackupRef::At(ms) => write!(f, "the newest backup at or before {ms} ms"),
        }
    }
}

/// What a restore does when the target file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IfExists {
    /// Fail, touching nothing (default).
    #[default]
    Refuse,
    /// Replace the file (with its `-wal` and `-shm` files) once the restored copy is complete
    /// and verified; refused while a store has the file open. Files only.
    Replace,
}

/// What [`Repository::restore`](super::Repository::restore) restores, and how.
///
/// A record is restored when its collection is one of `collections`, or it is one of `keys`;
/// with neither, every record is. A collection or key the backup does not hold is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RestoreOptions {
    /// These whole collections (with `keys` empty too: all of them).
    pub collections: Vec<String>,
    /// These records, by (collection, key), besides the `collections`.
    pub keys: Vec<(String, String)>,
    /// What to do when the target file exists.
    pub if_exists: IfExists,
}

impl RestoreOptions {
    /// Every collection, into a new file.
    pub fn all() -> Self {
        RestoreOptions::default()
    }

    /// Adds a collection to restore (the others are left out).
    pub fn collection(mut self, collection: impl Into<String>) -> Self {
        self.collections.push(collection.into());
        self
    }

    /// Adds a record to restore, by collection and key (the records of neither a named
    /// collection nor a named key are left out).
    pub fn key(mut self, collection: impl Into<String>, key: impl Into<String>) -> Self {
        self.keys.push((collection.into(), key.into()));
        self
    }

    /// Sets what to do when the target file exists.
    pub fn if_exists(mut self, if_exists: IfExists) -> Self {
        self.if_exists = if_exists;
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestoreSummary {
    /// The backup restored.
    pub backup_id: BackupId,
    /// Where: the file path or the redacted URL.
    pub target: String,
    /// Records restored.
    pub records: u64,
    /// Unique blobs among them.
    pub blobs: u64,
    /// Serialized size of their values.
    pub logical_bytes: u64,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}
