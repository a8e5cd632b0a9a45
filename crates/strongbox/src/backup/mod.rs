//! Backups: online, incremental, verified copies of a store in a repository directory, with
//! retention, and restore.
//!
//! A [`Repository`] is a directory (its format is `docs/backup-format.md`) holding every unique
//! blob once, byte for byte as the store holds it, in pack files named in index files, and one
//! manifest per backup listing the content-addressed chunks of its record lines (each record
//! with the blob it points at). A backup writes only the blobs and chunks the repository
//! lacks, plus its index and manifest.
//!
//! ```no_run
//! # async fn run(store: &strongbox::Store) -> strongbox::Result<()> {
//! use strongbox::backup::{BackupRef, Repository, RestoreOptions, Retention};
//! use strongbox::Config;
//!
//! let repository = Repository::open_or_create("/var/backups/game").await?;
//! let summary = repository.backup(store, |_| {}).await?;
//! assert!(repository.verify(Some(&summary.id), |_| {}).await?.is_clean());
//! repository.prune(&Retention::last(10)).await?;
//! let restored = Config::new("/tmp/game-restored.db");
//! repository
//!     .restore(&BackupRef::Latest, &restored, &RestoreOptions::all(), |_| {})
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! **Invariants:**
//! - A backup exists once its manifest does, and the manifest is published last, after every
//!   blob it names is durable; so a killed backup or prune leaves a valid repository (at worst
//!   with unreferenced blobs and temporary files, which prune removes).
//! - Prune holds the repository lock exclusively; backup, list, verify and restore hold it
//!   shared (they only add files or read). So a prune never deletes a blob that a running
//!   backup counted on.
//! - Nothing read from a manifest becomes a path: blob ids are parsed as 64 hex digits and
//!   printed again, and backup ids have a fixed shape ([`BackupId`]).
//! - Nothing found in the directory is trusted: no link is followed for reads or deletes
//!   (a repository whose `packs/`, `index/`, `manifests/`, `tmp/` or `dictionaries/` is a link is
//!   refused), only regular files are opened (a FIFO is damage, not a hang), every read is
//!   bounded, and one bad file only damages the backups that need it.
//! - `verify` runs every check `restore` runs (the same code), so it reports whatever restore
//!   would refuse; a restore into a file removes the temporaries of killed restores into the
//!   same file once it can prove them abandoned.
//! - An encrypted repository ([`Repository::create_encrypted`], opened with
//!   [`Repository::open_with_key`] and a [`RepositoryKey`]) seals every object it writes and
//!   names files by keyed hashes; an object that fails authentication is damage of that object
//!   like any other, and opening it without its key is `Error::RepositoryKey`.
//! - Nothing here speaks SQL: a store streams a snapshot through `Snapshots::snapshot` and
//!   takes restored records as `WriteOp::Restore`, so every backend reads and writes the same
//!   repository, and a backup of one backend restores into the other.

mod browse;
mod check;
mod chunk;
mod chunk_index;
mod configured;
mod copy;
mod create;
mod crypt;
mod diff;
mod differential;
mod encrypted;
mod files;
mod follow;
mod id;
mod index;
mod key;
mod lock;
mod manifest;
mod newest;
mod objects;
#[cfg(feature = "s3")]
mod offsite;
mod options;
mod pack;
mod prune_plan;
mod reader;
#[cfg(feature = "s3")]
mod remote;
#[cfg(feature = "s3")]
mod remote_lock;
mod repack;
mod repository;
mod restore;
mod retention;
mod sealed;
mod select;
mod structure;
mod target;
mod temporary;
mod verify;
mod writer;

use std::sync::Arc;

pub use crate::config::Retention;
pub use browse::{BackupRecord, BackupValue};
pub(crate) use configured::{
    Work, configured, configured_is_offsite, configured_newest_ms, forget_unlocked,
};
pub use copy::{CopyReport, copy, copy_with_lock_timeout};
pub use create::BackupSummary;
pub use diff::{DiffKind, RecordDiff};
pub(crate) use follow::follow_in_background;
pub use follow::{FollowStep, Follower};
pub use id::BackupId;
pub use key::{ENCRYPTED_FORMAT_VERSION, RepositoryKey};
pub use lock::LockNotice;
#[cfg(feature = "s3")]
pub use offsite::{Access, Offsite, OffsiteSession, PublishReport};
pub use options::{BackupRef, IfExists, RestoreOptions, RestoreSummary};
pub use prune_plan::PrunePlan;
pub use repository::{BackupInfo, FORMAT_VERSION, Repository};
pub use retention::PruneReport;
pub use structure::{CheckReport, ReadData};
pub use verify::{Damage, VerifyReport};

use crate::error::Result;
use crate::store::Store;

/// How far a long backup operation got, given to its progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is being done.
    pub stage: Stage,
    /// Units done so far (records or blobs, as the stage says).
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl Progress {
    pub(crate) fn new(stage: Stage, done: u64, total: u64) -> Self {
        Progress { stage, done, total }
    }
}

/// The stages of backup operations, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Backup: reading the store's records (units: records).
    Snapshot,
    /// Backup: making the new blobs durable in the repository (units: blobs).
    Flush,
    /// Verify: reading and re-hashing blobs (units: blobs).
    Verify,
    /// Restore: writing records into the target (units: records).
    Restore,
    /// Restore: verifying the restored database (units: the whole check).
    Check,
    /// Copy: writing files at the destination (units: files).
    Copy,
}

impl Stage {
    /// A lowercase name, for progress bars.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Snapshot => "snapshot",
            Stage::Flush => "flush",
            Stage::Verify => "verify",
            Stage::Restore => "restore",
            Stage::Check => "check",
            Stage::Copy => "copy",
        }
    }
}

/// A progress callback, shared with blocking threads.
type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What [`scheduled`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduledReport {
    /// The backup taken.
    pub backup: BackupSummary,
    /// The prune that followed it.
    pub prune: PruneReport,
}

/// A backup followed by a prune: what the background tasks and maintenance run when backups
/// are configured.
///
/// # Errors
/// The errors of [`Repository::backup`], then of [`Repository::prune`] (the backup is kept
/// when only the prune fails).
///
/// # Cancel safety
/// As [`Repository::backup`] until the backup is published; the prune then finishes on its
/// thread.
pub async fn scheduled(
    store: &Store,
    repository: &Repository,
    retention: &Retention,
) -> Result<ScheduledReport> {
    let backup = repository.backup(store, |_| {}).await?;
    let prune = repository.prune(retention).await?;
    Ok(ScheduledReport { backup, prune })
}
