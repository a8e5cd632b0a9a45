//! `Store::maintenance`: keep the database small, fast and checked, and say what was done.
//!
//! Steps run in order; each is timed, and a failing step is recorded in the report without
//! stopping the others (as the seed intended). What reads much (the orphan search, samples,
//! recompression's reading and encoding, the slack measurement, the backup, the integrity
//! check) runs on readers and blocking threads; what writes runs on the writer between group
//! commits in short jobs (deletes of 500 blobs, rewrites of 256 values, vacuum chunks of 2,048
//! pages), so writers wait at most one job and readers never wait. The one long writer job, a
//! full vacuum, runs on request or only when no write committed during the run. A lock keeps
//! maintenance from running twice at once.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::{Checks, Engine, Measurement, Upkeep};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::store::Store;

/// What `Store::maintenance_with` does beyond the default steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct MaintenanceOptions {
    /// Rebuild the whole file with `VACUUM` (blocks writes while it runs) instead of returning
    /// free pages incrementally, and `ANALYZE` everything instead of `PRAGMA optimize`.
    pub is_full: bool,
    /// Rebuild every index (`REINDEX`).
    pub reindex: bool,
}

/// One step of a maintenance run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    /// The step's name: `flush_read_counts`, `sweep_expired`, `trim_changes`,
    /// `collect_orphans`, `compress`, `optimize`, `reindex`, `vacuum`, `backup`, `checkpoint`,
    /// `integrity_check`, `cache_cleanup`.
    pub name: &'static str,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// What it did, or why it failed.
    pub outcome: String,
    /// Whether it succeeded.
    pub is_ok: bool,
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MaintenanceReport {
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Bytes on disk (database and WAL) before the run.
    pub file_bytes_before: u64,
    /// Bytes on disk after the run.
    pub file_bytes_after: u64,
    /// `file_bytes_before - file_bytes_after` (0 if the file grew).
    pub bytes_reclaimed: u64,
    /// Orphan blobs removed: always 0. An orphan (a blob no record refers to although its count
    /// says one does) is what a damaged record reference looks like, and the blob may hold the
    /// only copy of that record's value: the sweep then deletes nothing and its step fails,
    /// naming the problem (see `Store::verify`).
    pub orphan_blobs_removed: u64,
    /// Blobs whose last reference was released, now removed: a delete or an overwrite leaves
    /// the old value for this sweep, which removes it once no change of the feed names it
    /// (a put's value stays readable while its change is held; see `Store::change_value`).
    pub released_blobs_removed: u64,
    /// Expired records deleted (see `Store::sweep_expired`).
    pub records_expired: u64,
    /// Changes trimmed from the change feed (`changes_retention_secs`,
    /// `changes_retention_count`).
    pub changes_trimmed: u64,
    /// Compression dictionaries trained (see `Store::train_dictionaries`).
    pub dictionaries_trained: u64,
    /// Values rewritten with a new dictionary.
    pub values_recompressed: u64,
    /// Pages returned to the file system by the vacuum, measured before and after it (on
    /// PostgreSQL: 8 KiB pages by which Strongbox's tables shrank, net of other servers' writes).
    pub pages_vacuumed: u64,
    /// Problems the engine's integrity check reported: empty when healthy, and when the check
    /// does not apply (PostgreSQL without the amcheck extension), which the `integrity_check`
    /// step's outcome then says.
    pub integrity_problems: Vec<String>,
    /// Expired cache entries removed.
    pub cache_entries_evicted: u64,
    /// The backup maintenance took (and the prune after it), if one was due.
    pub backup: Option<crate::backup::ScheduledReport>,
    /// One line per failed step.
    pub errors: Vec<String>,
    /// Total time, in milliseconds.
    pub elapsed_ms: u64,
}

impl Store {
    /// Runs the default maintenance: save read counts, trim the change feed, collect orphan
    /// blobs, train compression dictionaries where they pay (and recompress), refresh planner
    /// statistics, return free pages to the file system, checkpoint the WAL, check integrity,
    /// sweep the cache.
    ///
    /// # Errors
    /// `Error::ReadOnly` on a store opened read-only; otherwise none of its own: failures of
    /// steps are in the report.
    ///
    /// # Cancel safety
    /// Cancel safe between steps: a step in progress on the writer still completes.
    pub async fn maintenance(&self) -> Result<MaintenanceReport> {
        self.maintenance_with(MaintenanceOptions::default()).await
    }

    /// Runs maintenance with options (full vacuum, reindex).
    ///
    /// # Errors
    /// As [`Store::maintenance`].
    ///
    /// # Cancel safety
    /// As [`Store::maintenance`].
    pub async fn maintenance_with(&self, options: MaintenanceOptions) -> Result<MaintenanceReport> {
        self.run_maintenance(options, &CancellationToken::new())
            .await
    }

    /// Runs maintenance, skipping the remaining steps once `cancel` fires.
    pub(crate) async fn run_maintenance(
        &self,
        options: MaintenanceOptions,
        cancel: &CancellationToken,
    ) -> Result<MaintenanceReport> {
        if self.config().read_only {
            return Err(Error::ReadOnly {
                action: "run maintenance".into(),
            });
        }
        let _running = self.maintenance_lock().lock().await;
        let started = Instant::now();
        let backend = self.backend();
        let mut report = MaintenanceReport {
            file_bytes_before: backend.file_bytes().await.unwrap_or(0),
            ..MaintenanceReport::default()
        };
        let mut run = Steps {
            report: &mut report,
            cancel,
        };
        run.step("flush_read_counts", async {
            self.flush_access();
            Ok("queued".to_owned())
        })
        .await;
        // Expired records first, then the feed: the orphan sweep then frees the values that
        // only they and trimmed changes held.
        let expired = run
            .step("sweep_expired", async {
                let swept = self.sweep_expired().await?;
                Ok((format!("deleted {swept} expired records"), swept))
            })
            .await;
        let trimmed = run
            .step("trim_changes", async {
                let trimmed = self.trim_changes().await?;
                Ok((format!("trimmed {trimmed} changes from the feed"), trimmed))
            })
            .await;
        // Writes committed from here on, by this store or any other connection, defer a full
        // vacuum (the sweeps above commit too).
        let commits_before = (self.commit_count(), backend.others_commit_marker().await);
        let orphans = run.step("collect_orphans", self.collect_orphans()).await;
        let compressed = run.step("compress", self.compress()).await;
        run.step("optimize", self.optimize(options.is_full)).await;
        if options.reindex {
            run.step("reindex", async {
                backend.reindex().await?;
                Ok("rebuilt every index".to_owned())
            })
            .await;
        }
        let vacuum = self.vacuum(options.is_full, commits_before);
        let pages = run.step("vacuum", vacuum).await;
        let backup = match &self.config().backup_repository {
            Some(_) if self.config().backup_interval_secs > 0 => {
                run.step("backup", self.scheduled_backup()).await.flatten()
            }
            _ => None,
        };
        run.step("checkpoint", self.checkpoint()).await;
        let problems = run
            .step("integrity_check", async {
                let problems = match backend.integrity_check().await? {
                    Measurement::Measured(problems) => problems,
                    Measurement::NotApplicable(why) => {
                        return Ok((format!("not applicable: {why}"), Vec::new()));
                    }
                };
                Ok((format!("{} problems", problems.len()), problems))
            })
            .await;
        let evicted = run
            .step("cache_cleanup", async {
                let evicted = self.cache().sweep();
                Ok((format!("evicted {evicted} entries"), evicted))
            })
            .await;

        (report.orphan_blobs_removed, report.released_blobs_removed) = orphans.unwrap_or((0, 0));
        report.records_expired = expired.unwrap_or(0);
        report.changes_trimmed = trimmed.unwrap_or(0);
        (report.dictionaries_trained, report.values_recompressed) = compressed.unwrap_or((0, 0));
        report.pages_vacuumed = pages.unwrap_or(0);
        if let Some(problems) = problems {
            for problem in &problems {
                report.errors.push(format!("integrity_check: {problem}"));
            }
            report.integrity_problems = problems;
        }
        report.cache_entries_evicted = evicted.unwrap_or(0);
        report.backup = backup;
        report.file_bytes_after = backend.file_bytes().await.unwrap_or(0);
        report.bytes_reclaimed = report
            .file_bytes_before
            .saturating_sub(report.file_bytes_after);
        report.elapsed_ms = millis(started);
        Ok(report)
    }
}

/// The steps of a maintenance run that take more than a line: each returns its description
/// and the value the report keeps.
impl Store {
    /// Deletes the blobs whose last reference was released and that no change of the feed
    /// names: (orphans, released) removed.
    async fn collect_orphans(&self) -> Result<(String, (u64, u64))> {
        let sweep = self.backend().collect_orphan_blobs().await?;
        Ok((
            format!(
                "removed {} released blobs ({} bytes)",
                sweep.released, sweep.released_bytes
            ),
            (sweep.blobs, sweep.released),
        ))
    }

    /// Trains dictionaries and recompresses: (dictionaries trained, values rewritten).
    async fn compress(&self) -> Result<(String, (u64, u64))> {
        let compression = self.train_dictionaries().await?;
        let trained = compression
            .collections
            .iter()
            .filter(|c| c.ratio_after.is_some())
            .count() as u64;
        let values = compression
            .collections
            .iter()
            .map(|c| c.values_recompressed)
            .sum::<u64>();
        Ok((compression.summary(), (trained, values)))
    }

    /// Refreshes the query planner's statistics (all of them when `is_full`).
    async fn optimize(&self, is_full: bool) -> Result<String> {
        self.backend().optimize(is_full).await?;
        Ok(if is_full { "analyzed" } else { "optimized" }.to_owned())
    }

    /// Returns free pages to the file system: incrementally, or by a rebuild when `is_full` or
    /// when more than `vacuum_slack_percent` of the file is slack and nobody wrote since the
    /// run began: neither this store (its commit count then) nor another connection (the
    /// engine's `others_commit_marker` then). A rebuild holds every writer of the file for its
    /// whole length, at a million records many seconds; the report then says it was deferred.
    /// The value is pages released.
    async fn vacuum(
        &self,
        is_full: bool,
        (own_before, others_before): (u64, Result<Measurement<u64>>),
    ) -> Result<(String, u64)> {
        let backend = self.backend();
        let mut pages = backend.vacuum(is_full).await?;
        if is_full {
            return Ok((format!("full: released {pages} pages"), pages));
        }
        // Half-empty pages (deletes spread over the key space) only a rebuild returns.
        let (slack, total) = match backend.slack().await? {
            Measurement::Measured(slack) => slack,
            Measurement::NotApplicable(why) => {
                return Ok((
                    format!("released {pages} pages; slack not measured: {why}"),
                    pages,
                ));
            }
        };
        let threshold = u64::from(self.config().vacuum_slack_percent);
        let percent = slack.saturating_mul(100).checked_div(total).unwrap_or(0);
        if threshold > 0 && percent > threshold {
            let writes = self.commit_count().wrapping_sub(own_before);
            // Another connection's writes: when they cannot be told, only this store's count.
            let others = match (others_before?, backend.others_commit_marker().await?) {
                (Measurement::Measured(before), Measurement::Measured(now)) => before != now,
                _ => false,
            };
            if writes > 0 || others {
                let by = match writes {
                    0 => "another connection's writes (another process, or another handle on \
                          this file)"
                        .to_owned(),
                    _ => format!("{writes} writes"),
                };
                return Ok((
                    format!(
                        "incremental: released {pages} pages; {percent}% of the file is slack, \
                         but {by} committed during this run: the full vacuum is left to a run \
                         without writes (or `maintenance --full`)"
                    ),
                    pages,
                ));
            }
            pages += backend.vacuum(true).await?;
            return Ok((
                format!(
                    "incremental, then full ({percent}% of the file was slack): released {pages} pages"
                ),
                pages,
            ));
        }
        Ok((
            format!("incremental: released {pages} pages ({percent}% slack left)"),
            pages,
        ))
    }

    /// Copies the WAL into the database file, as far as readers allow.
    async fn checkpoint(&self) -> Result<String> {
        let checkpoint = match self.backend().checkpoint().await? {
            Measurement::Measured(checkpoint) => checkpoint,
            Measurement::NotApplicable(why) => return Ok(format!("not applicable: {why}")),
        };
        Ok(format!(
            "{} of {} WAL frames copied{}",
            checkpoint.checkpointed_frames,
            checkpoint.wal_frames,
            if checkpoint.is_complete {
                ""
            } else {
                " (readers held the rest)"
            }
        ))
    }

    /// Backs up to the configured repository (then prunes) if the newest backup there is older
    /// than the interval.
    async fn scheduled_backup(&self) -> Result<(String, Option<crate::backup::ScheduledReport>)> {
        let done = self.backup_if_due().await;
        if done.is_err() {
            crate::backup::forget_unlocked(self);
        }
        done
    }

    async fn backup_if_due(&self) -> Result<(String, Option<crate::backup::ScheduledReport>)> {
        // An `s3://` repository is asked first, with one listing and no session: a session
        // takes the repository's exclusive lock and brings its mirror up to date, which a run
        // with no backup due must not do (it would hold other machines off for nothing). The
        // listing goes by the manifests' names, so a damaged newest backup delays the next
        // one by up to an interval (`backup check` reports it).
        if crate::backup::configured_is_offsite(self.config())
            && !self.is_backup_due(crate::backup::configured_newest_ms(self).await?)
        {
            return Ok(("not due yet".to_owned(), None));
        }
        let configured = crate::backup::configured(self, crate::backup::Work::Prune).await?;
        let done = self.backup_if_due_in(&configured.repository).await;
        // An `s3://` repository gets what was done, even a part (its mirror stays valid).
        configured.finish().await?;
        done
    }

    async fn backup_if_due_in(
        &self,
        repository: &crate::backup::Repository,
    ) -> Result<(String, Option<crate::backup::ScheduledReport>)> {
        let newest = repository
            .list()
            .await?
            .iter()
            .filter(|backup| backup.damage.is_none())
            .map(|backup| backup.created_at_ms)
            .max();
        if !self.is_backup_due(newest) {
            return Ok(("not due yet".to_owned(), None));
        }
        let report =
            crate::backup::scheduled(self, repository, &self.config().backup_retention).await?;
        let outcome = format!(
            "backup {}: {} records, {} new blobs ({} bytes written); pruned {} backups",
            report.backup.id,
            report.backup.records,
            report.backup.blobs_written,
            report.backup.bytes_written,
            report.prune.removed.len()
        );
        Ok((outcome, Some(report)))
    }

    /// Whether a scheduled backup is due, the newest one having been taken at `newest_ms`
    /// (`None`: there is none).
    fn is_backup_due(&self, newest_ms: Option<i64>) -> bool {
        let interval_ms = i64::try_from(self.config().backup_interval_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        newest_ms.is_none_or(|newest| now_ms().saturating_sub(newest) >= interval_ms)
    }
}

/// Runs and records steps.
struct Steps<'a> {
    report: &'a mut MaintenanceReport,
    cancel: &'a CancellationToken,
}

/// A step's result: its description, plus a value for the report.
trait StepOutput {
    type Value;
    fn split(self) -> (String, Self::Value);
}

impl StepOutput for String {
    type Value = ();
    fn split(self) -> (String, ()) {
        (self, ())
    }
}

impl<T> StepOutput for (String, T) {
    type Value = T;
    fn split(self) -> (String, T) {
        self
    }
}

impl Steps<'_> {
    /// Runs one step unless cancelled; records its time and outcome.
    async fn step<O: StepOutput>(
        &mut self,
        name: &'static str,
        work: impl Future<Output = Result<O>>,
    ) -> Option<O::Value> {
        if self.cancel.is_cancelled() {
            self.report.steps.push(StepReport {
                name,
                elapsed_ms: 0,
                outcome: "skipped: the store is closing".into(),
                is_ok: false,
            });
            return None;
        }
        let started = Instant::now();
        let result = work.await;
        let elapsed_ms = millis(started);
        match result {
            Ok(output) => {
                let (outcome, value) = output.split();
                self.report.steps.push(StepReport {
                    name,
                    elapsed_ms,
                    outcome,
                    is_ok: true,
                });
                Some(value)
            }
            Err(error) => {
                tracing::warn!(step = name, %error, "maintenance step failed");
                self.report.errors.push(format!("{name}: {error}"));
                self.report.steps.push(StepReport {
                    name,
                    elapsed_ms,
                    outcome: error.to_string(),
                    is_ok: false,
                });
                None
            }
        }
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
