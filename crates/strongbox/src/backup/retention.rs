//! [`Retention::select`] and [`Repository::prune`]: which backups to keep, and deleting the rest.
//!
//! **Invariants:** prune never deletes a blob or chunk a remaining backup needs. It holds the
//! repository lock exclusively (no backup runs meanwhile), deletes manifests before packs (a
//! crash in between leaves only unreferenced entries), and deletes no pack at all while any
//! remaining manifest or index cannot be read, since what is needed is then unknown
//! ([`super::repack`] orders the rest). Prune never deletes outside the repository: it refuses
//! to run when `packs/`, `index/`, `manifests/` or `tmp/` is a link (the lock checks the
//! layout), skips pack shards that are not real directories and pack entries that are not
//! regular files, and deletes links in `tmp/` themselves, never what they point at.

use std::collections::{BTreeSet, HashSet};

use super::files::{blocking, io_error, read_dir, sync_dir};
use super::id::{BackupId, day_of, week_of};
use super::manifest::{ManifestReader, read_summary};
use super::repack::Needed;
use super::repository::{LockMode, Repository};
use crate::blob::BlobId;
use crate::config::Retention;
use crate::error::{Error, Result};

/// Applying a [`Retention`] (defined beside `Config`, which carries one for scheduled prunes).
impl Retention {
    /// The backups to keep among `backups` (id and creation time in milliseconds): those any
    /// rule keeps, and always the newest.
    pub fn select(&self, backups: &[(BackupId, i64)]) -> BTreeSet<BackupId> {
        let mut newest_first: Vec<&(BackupId, i64)> = backups.iter().collect();
        newest_first.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
        let mut kept: BTreeSet<BackupId> = newest_first
            .iter()
            .take(self.keep_last.max(1))
            .map(|(id, _)| id.clone())
            .collect();
        if let Some((_, newest_ms)) = newest_first.first() {
            let window_ms =
                i64::try_from(self.keep_within_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let oldest_kept_ms = newest_ms.saturating_sub(window_ms);
            kept.extend(
                newest_first
                    .iter()
                    .take_while(|(_, created_at_ms)| *created_at_ms >= oldest_kept_ms)
                    .map(|(id, _)| id.clone()),
            );
        }
        for (count, period) in [
            (self.keep_daily, day_of as fn(i64) -> i64),
            (self.keep_weekly, week_of),
        ] {
            let mut periods = HashSet::new();
            for (id, created_at_ms) in &newest_first {
                if periods.len() >= count {
                    break;
                }
                // The first backup seen in a period is its newest.
                if periods.insert(period(*created_at_ms)) {
                    kept.insert(id.clone());
                }
            }
        }
        kept
    }
}

/// What [`Repository::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Backups kept, oldest first.
    pub kept: Vec<BackupId>,
    /// Backups deleted, oldest first.
    pub removed: Vec<BackupId>,
    /// Blobs no remaining backup refers to, dropped from the index.
    pub blobs_removed: u64,
    /// Their stored bytes.
    pub bytes_removed: u64,
    /// Packs deleted: those holding nothing a remaining backup needs, those repacked, and
    /// those no index named (left by interrupted backups or prunes).
    pub packs_removed: u64,
    /// Packs that were mostly garbage, whose live entries were copied into new packs.
    pub packs_repacked: u64,
    /// Bytes the repository's packs shrank by.
    pub pack_bytes_freed: u64,
    /// Blobs kept (those the remaining backups refer to).
    pub blobs_kept: u64,
    /// Temporary files of interrupted backups, deleted.
    pub temp_files_removed: u64,
    /// Why no blob was deleted, when a remaining manifest or an index cannot be read (remove
    /// or repair it by hand, then prune again).
    pub sweep_skipped: Option<String>,
}

impl Repository {
    /// Deletes the backups `retention` does not keep, then every blob no remaining backup
    /// refers to, and the leftovers of interrupted backups. Waits for running backups to end
    /// and keeps new ones from starting until it is done. A backup whose manifest cannot be
    /// read is neither kept nor deleted: it is left for a person to look at.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when `retention` would keep nothing, `Error::Io` when files
    /// cannot be listed or deleted (what was deleted before stays deleted; the repository
    /// stays valid).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped prune finishes on its thread, and an interrupted one leaves a
    /// valid repository.
    pub async fn prune(&self, retention: &Retention) -> Result<PruneReport> {
        require_rule(retention)?;
        let repository = self.clone();
        let retention = *retention;
        blocking(move || repository.prune_blocking(&retention)).await
    }

    fn prune_blocking(&self, retention: &Retention) -> Result<PruneReport> {
        let _lock = self.lock(LockMode::Exclusive)?;
        let mut report = PruneReport {
            temp_files_removed: self.remove_temporary_files()?,
            ..PruneReport::default()
        };
        let choice = self.choose(retention)?;
        for id in &choice.removed {
            let path = self.manifest_path(id);
            std::fs::remove_file(&path).map_err(io_error(format!("delete {}", path.display())))?;
        }
        if !choice.removed.is_empty() {
            sync_dir(&self.manifests_dir())?;
        }
        report.kept = choice.kept;
        report.removed = choice.removed;
        if let Some(skipped) = choice.sweep_skipped {
            report.sweep_skipped = Some(skipped);
            return Ok(report);
        }
        let (blobs, chunks) = self.needed_by(&report.kept)?;
        let needed = Needed {
            blobs: &blobs,
            chunks: &chunks,
        };
        self.sweep_packs(&needed, &mut report)?;
        Ok(report)
    }

    /// Which backups `retention` keeps and which it removes (each oldest first), and the
    /// unreadable ones, which it does neither: the choice prune makes and its dry run shows.
    pub(super) fn choose(&self, retention: &Retention) -> Result<Choice> {
        let mut choice = Choice::default();
        let mut backups = Vec::new();
        let mut bases = Vec::new();
        for id in self.manifest_ids()? {
            match read_summary(self, &id) {
                Ok(summary) => {
                    if let Some(base) = summary.header.base.as_deref() {
                        bases.push((id.clone(), BackupId::parse(base)?));
                    }
                    backups.push((id, summary.header.created_at_ms));
                }
                Err(error) => {
                    choice.sweep_skipped.get_or_insert_with(|| {
                        format!(
                            "backup {id} is unreadable ({error}), so the blobs it needs are unknown"
                        )
                    });
                    choice.unreadable.push(id);
                }
            }
        }
        let mut kept = retention.select(&backups);
        // A differential backup needs its base: it is kept with it.
        for (id, base) in bases {
            if kept.contains(&id) {
                kept.insert(base);
            }
        }
        backups.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        for (id, _) in backups {
            if kept.contains(&id) {
                choice.kept.push(id);
            } else {
                choice.removed.push(id);
            }
        }
        Ok(choice)
    }

    /// The blobs and the manifest chunks the backups `kept` need.
    pub(super) fn needed_by(
        &self,
        kept: &[BackupId],
    ) -> Result<(HashSet<BlobId>, HashSet<BlobId>)> {
        let (mut blobs, mut chunks) = (HashSet::new(), HashSet::new());
        for id in kept {
            let mut reader = ManifestReader::open(self, id)?;
            while let Some(entry) = reader.next_entry()? {
                blobs.insert(entry.blob_id);
            }
            chunks.extend(reader.chunk_ids());
        }
        Ok((blobs, chunks))
    }

    /// Deletes what interrupted backups left in `tmp/` (a real directory: the lock checked);
    /// returns the number of files. Links are deleted themselves, never followed.
    fn remove_temporary_files(&self) -> Result<u64> {
        let mut removed = 0;
        for (path, file_type) in read_dir(&self.tmp_dir())? {
            removed += count_files(&path, file_type)?;
            // `remove_dir_all` deletes links inside the directory, not what they point at.
            let deleted = if file_type.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            deleted.map_err(io_error(format!("delete {}", path.display())))?;
        }
        Ok(removed)
    }
}

/// The number of files at `path` (of type `file_type`, not following links), counting those
/// in directories below it.
fn count_files(path: &std::path::Path, file_type: std::fs::FileType) -> Result<u64> {
    if !file_type.is_dir() {
        return Ok(1);
    }
    read_dir(path)?
        .iter()
        .map(|(inner, file_type)| count_files(inner, *file_type))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn backups(times: &[i64]) -> Result<Vec<(BackupId, i64)>> {
        times
            .iter()
            .enumerate()
            .map(|(n, &ms)| {
                let id = BackupId::parse(&format!(
                    "{}-{n:08x}",
                    BackupId::generate(ms)
                        .as_str()
                        .get(..16)
                        .unwrap_or_default()
                ))?;
                Ok((id, ms))
            })
            .collect()
    }

    fn kept_times(retention: Retention, all: &[(BackupId, i64)]) -> Vec<i64> {
        let kept = retention.select(all);
        all.iter()
            .filter(|(id, _)| kept.contains(id))
            .map(|(_, ms)| *ms)
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest() -> Result<()> {
        let all = backups(&[DAY, 2 * DAY, 3 * DAY, 4 * DAY])?;
        assert_eq!(kept_times(Retention::last(2), &all), [3 * DAY, 4 * DAY]);
        assert_eq!(kept_times(Retention::last(9), &all).len(), 4);
        Ok(())
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() -> Result<()> {
        // Three backups a day for four days.
        let times: Vec<i64> = (0..4)
            .flat_map(|day| [1, 9, 17].map(|hour| 10 * DAY + day * DAY + hour * HOUR))
            .collect();
        let all = backups(&times)?;
        let daily = Retention {
            keep_last: 1,
            keep_daily: 3,
            keep_weekly: 0,
            keep_within_secs: 0,
        };
        assert_eq!(
            kept_times(daily, &all),
            [
                11 * DAY + 17 * HOUR,
                12 * DAY + 17 * HOUR,
                13 * DAY + 17 * HOUR
            ]
        );
        Ok(())
    }

    #[test]
    fn weekly_keeps_the_newest_of_each_week() -> Result<()> {
        // One backup a day for 21 days from Monday 1970-01-05.
        let times: Vec<i64> = (0..21).map(|day| (4 + day) * DAY + HOUR).collect();
        let all = backups(&times)?;
        let weekly = Retention {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 2,
            keep_within_secs: 0,
        };
        // The Sundays of the last two weeks.
        assert_eq!(kept_times(weekly, &all), [17 * DAY + HOUR, 24 * DAY + HOUR]);
        Ok(())
    }
}

/// What [`Repository::choose`] decided.
#[derive(Default)]
pub(super) struct Choice {
    pub(super) kept: Vec<BackupId>,
    pub(super) removed: Vec<BackupId>,
    pub(super) unreadable: Vec<BackupId>,
    /// Why no blob may be deleted: the first unreadable backup.
    pub(super) sweep_skipped: Option<String>,
}

/// `Error::InvalidConfig` for a retention with no rule, which would keep no backup.
pub(super) fn require_rule(retention: &Retention) -> Result<()> {
    if retention.has_rule() {
        return Ok(());
    }
    Err(Error::InvalidConfig(
        "the retention keeps no backup; set keep_last, keep_daily or keep_weekly to at least 1, \
         or keep_within_secs above 0"
            .into(),
    ))
}
