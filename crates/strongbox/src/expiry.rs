//! Records that expire: [`Store::sweep_expired`], which deletes them once they have expired.
//!
//! **Invariant:** the sweep only reclaims space and reports: a record is absent for every read
//! from its expiry instant (`record::Expiry`), swept or not. Each record swept gets an
//! `expired` change in the feed, exactly as when a write finds it expired first.

use crate::backend::Upkeep;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::store::Store;

/// Expired records deleted per transaction: small enough that a sweep holds the writer (or
/// the rows, on PostgreSQL) for milliseconds at a time.
pub const EXPIRY_BATCH: usize = 1_000;

impl Store {
    /// Deletes the records that have expired, in batches of [`EXPIRY_BATCH`], each with its
    /// value's reference released and an `expired` change in the feed; returns how many were
    /// deleted. Maintenance runs it, and so does the expiry task every
    /// `expiry_sweep_interval_secs`. Expired records are absent for reads whether swept or not.
    ///
    /// # Errors
    /// `Error::ReadOnly` on a read-only store; the engine's errors.
    ///
    /// # Cancel safety
    /// Cancel safe: each batch is one transaction, and a batch not run is left for the next
    /// sweep.
    pub async fn sweep_expired(&self) -> Result<u64> {
        if self.config().read_only {
            return Err(Error::ReadOnly {
                action: "sweep expired records".into(),
            });
        }
        let now = now_ms();
        let mut swept = 0;
        loop {
            let (examined, deleted) = self.backend().sweep_expired(now, EXPIRY_BATCH).await?;
            if deleted > 0 {
                swept += deleted;
                self.note_commit();
            }
            // A batch of damaged records (left for `verify`) deletes nothing: stop there
            // rather than read them again.
            if examined < EXPIRY_BATCH || deleted == 0 {
                return Ok(swept);
            }
        }
    }
}
