//! [`Store::verify`]: re-hash every blob, recount every reference, run the engine's check.

use crate::backend::{BlobCursor, Checks, Measurement};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::seal;
use crate::store::Store;

/// Blobs read per query while verifying.
const PAGE_BLOBS: usize = 256;

/// Records read per query while verifying.
const PAGE_RECORDS: usize = 1024;

/// Unreadable pages of blobs in a row after which the walk gives up (the rest of the table is
/// taken to be unreadable; `integrity_check` then says more).
const MAX_UNREADABLE_PAGES: usize = 16;

/// Records named per damaged blob in a report.
const MAX_RECORDS_PER_PROBLEM: usize = 100;

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Collection of the affected record, when one is affected.
    pub collection: Option<String>,
    /// Key of the affected record, when one is affected.
    pub key: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Blobs decoded and re-hashed.
    pub blobs_checked: u64,
    /// Records compared with their seals.
    pub records_checked: u64,
    /// Problems found; empty when the store is healthy.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Records a part of the store that could not be read.
    fn found(&mut self, error: Error, action: &str) {
        self.problems.push(Problem {
            collection: None,
            key: None,
            detail: format!("cannot {action}: {error}"),
        });
    }

    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks the whole store: every blob decodes and matches its hash, every record matches
    /// its seal (so a damaged key, version or value reference is found, not only a damaged
    /// value), every reference count equals the records pointing at the blob, no record points
    /// at a missing blob, and the engine's own integrity check passes where it can run (on
    /// PostgreSQL it needs the `amcheck` extension). Problems name the affected collection and
    /// key.
    ///
    /// Damage does not stop it: a part of the store that cannot be read (a malformed page, a
    /// key that is not UTF-8) is a problem in the report, and the other checks still run, so
    /// the report lists every problem found.
    ///
    /// It reads page by page while the store keeps serving; writes committed meanwhile may or
    /// may not be covered.
    ///
    /// # Errors
    /// `Error::Busy`, `Error::Closed`, `Error::Io` when the checks themselves cannot run; what
    /// they find is in the report.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let backend = self.backend();
        let mut report = VerifyReport::default();
        if let Err(error) = self.dictionaries().reload(backend).await {
            report.found(is_damage(error)?, "load the compression dictionaries");
        }
        for (id, error) in self.dictionaries().load().broken() {
            report.problems.push(Problem {
                collection: None,
                key: None,
                detail: format!("compression dictionary {id:08x} cannot be loaded: {error}"),
            });
        }
        self.verify_blobs(&mut report).await?;
        self.verify_records(&mut report).await?;
        match backend.refcount_mismatches().await {
            Ok(mismatches) => {
                for mismatch in mismatches {
                    let detail = format!(
                        "blob {} has reference count {} but {} records point at it",
                        mismatch.blob_id, mismatch.recorded, mismatch.actual
                    );
                    self.report_blob(&mut report, mismatch.blob_id, detail)
                        .await?;
                }
            }
            Err(error) => report.found(is_damage(error)?, "recount blob references"),
        }
        match backend.dangling_records().await {
            Ok(dangling) => {
                for (collection, key) in dangling {
                    report.problems.push(Problem {
                        collection: Some(collection),
                        key: Some(key),
                        detail: "the record points at a missing blob".into(),
                    });
                }
            }
            Err(error) => report.found(is_damage(error)?, "find records without a blob"),
        }
        match backend.integrity_check().await {
            // An engine without a check it can run here has nothing to add.
            Ok(Measurement::NotApplicable(_)) => {}
            Ok(Measurement::Measured(lines)) => {
                for line in lines {
                    report.problems.push(Problem {
                        collection: None,
                        key: None,
                        detail: format!("integrity check: {line}"),
                    });
                }
            }
            Err(error) => report.found(is_damage(error)?, "run the integrity check"),
        }
        Ok(report)
    }

    /// Decodes and re-hashes every blob. A page that cannot be read is reported and stepped
    /// over where the engine's order allows it.
    async fn verify_blobs(&self, report: &mut VerifyReport) -> Result<()> {
        let mut after = BlobCursor::default();
        let mut unreadable_in_a_row = 0;
        loop {
            let (page, next) = match self.backend().blobs_after(after, PAGE_BLOBS).await {
                Ok(page) => page,
                Err(error) => {
                    report.found(is_damage(error)?, "read the stored values");
                    unreadable_in_a_row += 1;
                    match after.skip(PAGE_BLOBS) {
                        Some(next) if unreadable_in_a_row < MAX_UNREADABLE_PAGES => {
                            after = next;
                            continue;
                        }
                        _ => return Ok(()),
                    }
                }
            };
            unreadable_in_a_row = 0;
            let last_page = page.len() < PAGE_BLOBS;
            after = next;
            for (blob_id, stored) in page {
                report.blobs_checked += 1;
                if let Err(error) = self.decode_blob(&blob_id, &stored).await {
                    let detail = format!("blob {blob_id}: {error}");
                    self.report_blob(report, blob_id, detail).await?;
                }
            }
            if last_page {
                return Ok(());
            }
        }
    }

    /// Compares every record with its seal and checks its names are UTF-8.
    async fn verify_records(&self, report: &mut VerifyReport) -> Result<()> {
        let mut after = None;
        loop {
            let page = match self
                .backend()
                .records_after(after.clone(), PAGE_RECORDS)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    // Records are ordered by name: a stretch that cannot be read cannot be
                    // stepped over, so the walk ends here; the other checks still run.
                    report.found(is_damage(error)?, "read the records");
                    return Ok(());
                }
            };
            let last_page = page.len() < PAGE_RECORDS;
            for record in &page {
                report.records_checked += 1;
                let collection = String::from_utf8_lossy(&record.collection).into_owned();
                let key = String::from_utf8_lossy(&record.key).into_owned();
                let problem = |detail: &str| Problem {
                    collection: Some(collection.clone()),
                    key: Some(key.clone()),
                    detail: detail.to_owned(),
                };
                if std::str::from_utf8(&record.collection).is_err()
                    || std::str::from_utf8(&record.key).is_err()
                {
                    report.problems.push(problem(
                        "the record's collection or key is not valid UTF-8 (a damaged name)",
                    ));
                }
                // A record without its blob is reported by the dangling-record check.
                let Some(blob_id) = record.blob_id else {
                    continue;
                };
                let expected = seal(
                    &record.collection,
                    &record.key,
                    &blob_id,
                    record.format,
                    &record.meta,
                );
                if expected != record.seal {
                    report.problems.push(problem(
                        "the record does not match its seal: its key, version, metadata or \
                         value reference was altered (the value is not returned; restore the \
                         record from a backup)",
                    ));
                }
            }
            if last_page {
                return Ok(());
            }
            after = page
                .last()
                .map(|record| (record.collection.clone(), record.key.clone()));
        }
    }

    /// Adds a problem for each record of a blob (or one for the blob alone).
    async fn report_blob(
        &self,
        report: &mut VerifyReport,
        blob_id: BlobId,
        detail: String,
    ) -> Result<()> {
        let records = self
            .backend()
            .records_of_blob(blob_id, MAX_RECORDS_PER_PROBLEM)
            .await?;
        if records.is_empty() {
            report.problems.push(Problem {
                collection: None,
                key: None,
                detail,
            });
            return Ok(());
        }
        for (collection, key) in records {
            report.problems.push(Problem {
                collection: Some(collection),
                key: Some(key),
                detail: detail.clone(),
            });
        }
        Ok(())
    }
}

/// An error of a check that is damage to report (the store is corrupt, or the engine could not
/// read it), as opposed to one that stops the whole verification (busy, closed, I/O).
fn is_damage(error: Error) -> Result<Error> {
    match error {
        Error::Corrupt { .. } | Error::Backend { .. } => Ok(error),
        other => Err(other),
    }
}
