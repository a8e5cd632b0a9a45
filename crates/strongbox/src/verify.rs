//! [`Store::verify`]: re-hash every blob, recount every reference, run the engine's check.

use crate::backend::BlobCursor;
use crate::blob::BlobId;
use crate::error::Result;
use crate::store::Store;

/// Blobs read per query while verifying.
const PAGE_BLOBS: usize = 256;

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
    /// Problems found; empty when the store is healthy.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks the whole store: every blob decodes and matches its hash, every reference count
    /// equals the records pointing at the blob, no record points at a missing blob, and the
    /// engine's own integrity check passes. Problems name the affected collection and key.
    ///
    /// It reads page by page while the store keeps serving; writes committed meanwhile may or
    /// may not be covered.
    ///
    /// # Errors
    /// `Error::Busy`, `Error::Backend` when the checks themselves cannot run; what they find is
    /// in the report.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let backend = self.backend();
        let mut report = VerifyReport::default();
        self.dictionaries().reload(backend).await?;
        for (id, error) in self.dictionaries().load().broken() {
            report.problems.push(Problem {
                collection: None,
                key: None,
                detail: format!("compression dictionary {id:08x} cannot be loaded: {error}"),
            });
        }
        let mut after = BlobCursor::Start;
        loop {
            let (page, next) = backend.blobs_after(after, PAGE_BLOBS).await?;
            let last_page = page.len() < PAGE_BLOBS;
            after = next;
            for (blob_id, stored) in page {
                report.blobs_checked += 1;
                if let Err(error) = self.decode_blob(&blob_id, &stored).await {
                    let detail = format!("blob {blob_id}: {error}");
                    self.report_blob(&mut report, blob_id, detail).await?;
                }
            }
            if last_page {
                break;
            }
        }
        for mismatch in backend.refcount_mismatches().await? {
            let detail = format!(
                "blob {} has reference count {} but {} records point at it",
                mismatch.blob_id, mismatch.recorded, mismatch.actual
            );
            self.report_blob(&mut report, mismatch.blob_id, detail)
                .await?;
        }
        for (collection, key) in backend.dangling_records().await? {
            report.problems.push(Problem {
                collection: Some(collection),
                key: Some(key),
                detail: "the record points at a missing blob".into(),
            });
        }
        for line in backend.integrity_check().await? {
            report.problems.push(Problem {
                collection: None,
                key: None,
                detail: format!("integrity check: {line}"),
            });
        }
        Ok(report)
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
