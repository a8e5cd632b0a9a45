//! [`Repository::plan_prune`]: what a prune would delete, deleting nothing (a dry run).
//!
//! **Invariant:** the plan chooses the backups with the same rule as the prune
//! ([`Retention::select`] over the readable manifests; an unreadable one is neither kept nor
//! deleted), and holds the lock shared: it reads and never writes, so it runs beside backups.
//! A prune started later may find other backups (new ones, or ones another prune deleted).

use std::collections::HashSet;

use super::files::blocking;
use super::id::BackupId;
use super::index::Packs;
use super::manifest::{ManifestReader, read_summary};
use super::repository::{LockMode, Repository};
use crate::blob::BlobId;
use crate::config::Retention;
use crate::error::{Error, Result};

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
        if !retention.has_rule() {
            return Err(Error::InvalidConfig(
                "the retention keeps no backup; set keep_last, keep_daily or keep_weekly to at \
                 least 1, or keep_within_secs above 0"
                    .into(),
            ));
        }
        let repository = self.clone();
        let retention = *retention;
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            repository.plan_prune_blocking(&retention)
        })
        .await
    }

    fn plan_prune_blocking(&self, retention: &Retention) -> Result<PrunePlan> {
        let mut plan = PrunePlan::default();
        let mut backups = Vec::new();
        for id in self.manifest_ids()? {
            match read_summary(self, &id) {
                Ok(summary) => backups.push((id, summary.header.created_at_ms)),
                Err(error) => {
                    plan.sweep_skipped.get_or_insert_with(|| {
                        format!(
                            "backup {id} is unreadable ({error}), so the blobs it needs are unknown"
                        )
                    });
                    plan.unreadable.push(id);
                }
            }
        }
        let kept = retention.select(&backups);
        backups.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        for (id, _) in backups {
            if kept.contains(&id) {
                plan.kept.push(id);
            } else {
                plan.removed.push(id);
            }
        }
        let mut needed: HashSet<BlobId> = HashSet::new();
        for id in &plan.kept {
            let mut reader = ManifestReader::open(self, id)?;
            while let Some(entry) = reader.next_entry()? {
                needed.insert(entry.blob_id);
            }
        }
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
