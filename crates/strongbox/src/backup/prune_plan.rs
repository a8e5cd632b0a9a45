//! [`Repository::plan_prune`]: what a prune would delete, deleting nothing (a dry run).
//!
//! **Invariant:** the plan chooses the backups and the blobs they need with the prune's own
//! code (`Repository::choose` and `needed_by`: [`Retention::select`] over the readable
//! manifests; an unreadable one is neither kept nor deleted), and holds the lock shared: it reads and never writes, so it runs beside backups.
//! A prune started later may find other backups (new ones, or ones another prune deleted).

use super::files::blocking;
use super::id::BackupId;
use super::index::Packs;
use super::repository::{LockMode, Repository};
use super::retention::require_rule;
use crate::config::Retention;
use crate::error::Result;

/// What [`Repository::prune`] would do now with a retention, as [`Repository::plan_prune`]
/// finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// Backups the retention keeps, oldest first.
    pub kept: Vec<BackupId>,
    /// Backups a prune would delete, oldest first.
    pub removed: Vec<BackupId>,
    /// Backups whose manifest cannot be read: a prune leaves them (and then deletes no blob).
    pub unreadable: Vec<BackupId>,
    /// Blobs that no kept backup refers to: a prune drops them from the index.
    pub blobs_removed: u64,
    /// Their stored bytes.
    pub bytes_removed: u64,
    /// Blobs the kept backups refer to.
    pub blobs_kept: u64,
    /// Why a prune would delete no blob, when a manifest or an index cannot be read.
    pub sweep_skipped: Option<String>,
}

impl Repository {
    /// What a prune with `retention` would delete now, deleting nothing: the backups it would
    /// remove and keep, and the blobs only the removed ones need.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when `retention` has no rule (as prune), `Error::Io` when the
    /// repository cannot be listed, `Error::LockTimeout` when a prune holds the lock too long.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn plan_prune(&self, retention: &Retention) -> Result<PrunePlan> {
        require_rule(retention)?;
        let repository = self.clone();
        let retention = *retention;
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            repository.plan_prune_blocking(&retention)
        })
        .await
    }

    fn plan_prune_blocking(&self, retention: &Retention) -> Result<PrunePlan> {
        let choice = self.choose(retention)?;
        let mut plan = PrunePlan {
            kept: choice.kept,
            removed: choice.removed,
            unreadable: choice.unreadable,
            sweep_skipped: choice.sweep_skipped,
            ..PrunePlan::default()
        };
        let (needed, _) = self.needed_by(&plan.kept)?;
        plan.blobs_kept = needed.len() as u64;
        let packs = Packs::load(self)?;
        if let Some(damage) = packs.damaged.first() {
            plan.sweep_skipped
                .get_or_insert_with(|| format!("{damage}, so what it holds is unknown"));
        }
        if plan.sweep_skipped.is_none() {
            for (blob_id, location) in &packs.blobs {
                if !needed.contains(blob_id) {
                    plan.blobs_removed += 1;
                    plan.bytes_removed += location.length;
                }
            }
        }
        Ok(plan)
    }
}
