//! The write rule, once for both engines: what one [`WriteOp`] does to the record it finds.
//!
//! [`plan`] is pure: given the operation, the record's current state as the engine read it
//! inside its write transaction ([`Current`]) and the time, it returns the [`Plan`] the engine
//! executes, or the conflict. It checks the condition, computes the next version and metadata,
//! seals the new record, and says which blob to reference and which to release (the rules of
//! `crate::blob`). An engine only reads the current row, executes plans and adjusts counts.
//!
//! **Invariant:** a damaged record (one that does not match its seal, or whose blob is missing)
//! satisfies only `Expect::Any`, and its reference and metadata are neither reused nor
//! released: its count stays, for `verify` to report.

use crate::backend::WriteOp;
use crate::blob::{BlobId, EncodedBlob};
use crate::error::{Error, Result};
use crate::record::{Expect, RecordMeta, Version, seal};

/// A record as a write transaction finds it, before the write. `R` is the engine's own handle
/// on the blob the record points at (SQLite's blob `ref`, PostgreSQL's blob id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current<R> {
    /// The id of the blob the record points at; `None` when that blob is missing.
    pub blob_id: Option<BlobId>,
    /// The engine's handle on that blob, to release it.
    pub blob_ref: R,
    /// The serialization format tag.
    pub format: u8,
    /// Version and metadata as stored.
    pub meta: RecordMeta,
    /// The seal stored with the record.
    pub seal: i64,
}

impl<R> Current<R> {
    /// Whether the record matches its seal (and its blob exists): only then are its version,
    /// reference and metadata trusted.
    pub fn is_intact(&self, collection: &str, key: &str) -> bool {
        self.blob_id.is_some_and(|blob_id| {
            seal(
                collection.as_bytes(),
                key.as_bytes(),
                &blob_id,
                self.format,
                &self.meta,
            ) == self.seal
        })
    }
}

/// Whether the record found has expired at `now_ms`: an intact record past its expiry
/// instant. Such a record is absent for every operation: the engine deletes it first (with an
/// `expired` change and its reference released, as the sweep does) and plans with no record.
/// A damaged record is never taken for expired: its expiry is not trusted either.
pub(crate) fn has_expired<R>(
    current: Option<&Current<R>>,
    collection: &str,
    key: &str,
    now_ms: i64,
) -> bool {
    current.is_some_and(|current| {
        current.meta.is_expired_at(now_ms) && current.is_intact(collection, key)
    })
}

/// Which blob the written record points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reference<R> {
    /// The record already points at this value: keep its reference (the write is deduplicated).
    Keep(R),
    /// Add a reference to the operation's blob, storing it if it is new (rule 1).
    Add,
}

/// What an engine does for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan<'op, R> {
    /// Write the record: insert it, or update the row found (`replaces`).
    Put {
        /// The value it points at.
        blob: &'op EncodedBlob,
        /// The serialization format tag.
        format: u8,
        /// The record's metadata after the write.
        meta: RecordMeta,
        /// Its seal (see `record::seal`).
        seal: i64,
        /// Which blob it points at.
        reference: Reference<R>,
        /// Whether a row exists for the key (damaged or not).
        replaces: bool,
        /// The blob to release a reference to (rule 2), after the record is written.
        release: Option<R>,
    },
    /// Remove the row found, then release a reference to this blob, if any.
    Delete {
        /// The blob to release (`None` for a damaged record, whose reference is not trusted).
        release: Option<R>,
    },
    /// Nothing to do: a delete of a key that does not exist.
    Absent,
    /// Nothing to do: a check that held.
    Checked,
}

/// The plan for `op` on a record found in state `current` (`None`: no record), at `now_ms`.
///
/// # Errors
/// `Error::Conflict` when the condition is not met, `Error::Corrupt` for a condition on a
/// damaged record (see [`check_expect`]).
pub(crate) fn plan<'op, R: Copy>(
    op: &'op WriteOp,
    current: Option<&Current<R>>,
    now_ms: i64,
) -> Result<Plan<'op, R>> {
    let (collection, key) = op.target();
    let intact = current.filter(|current| current.is_intact(collection, key));
    let state = current.map(|current| (current.meta.version, intact.is_some()));
    let replaces = current.is_some();
    match op {
        WriteOp::Put {
            blob,
            format,
            expect,
            expect_value,
            expires_at_ms,
            ..
        } => {
            check_expect(collection, key, *expect, state)?;
            check_value(collection, key, *expect, *expect_value, intact, state)?;
            let meta = RecordMeta {
                version: current.map_or(Version::FIRST, |current| current.meta.version.next()),
                created_at_ms: intact.map_or(now_ms, |current| current.meta.created_at_ms),
                updated_at_ms: now_ms,
                size_bytes: blob.raw_len,
                access_count: intact.map_or(0, |current| current.meta.access_count),
                last_accessed_ms: intact.map_or(0, |current| current.meta.last_accessed_ms),
                expires_at_ms: *expires_at_ms,
            };
            let kept = intact.filter(|current| current.blob_id == Some(blob.id));
            Ok(Plan::Put {
                blob,
                format: *format,
                meta,
                seal: seal_of(collection, key, blob, *format, &meta),
                reference: kept.map_or(Reference::Add, |current| Reference::Keep(current.blob_ref)),
                replaces,
                release: intact
                    .filter(|_| kept.is_none())
                    .map(|current| current.blob_ref),
            })
        }
        WriteOp::Restore {
            blob, format, meta, ..
        } => {
            check_expect(collection, key, Expect::Absent, state)?;
            let meta = RecordMeta {
                size_bytes: blob.raw_len,
                ..*meta
            };
            Ok(Plan::Put {
                blob,
                format: *format,
                meta,
                seal: seal_of(collection, key, blob, *format, &meta),
                reference: Reference::Add,
                replaces,
                release: None,
            })
        }
        WriteOp::Check {
            expect,
            expect_value,
            ..
        } => {
            check_expect(collection, key, *expect, state)?;
            check_value(collection, key, *expect, *expect_value, intact, state)?;
            Ok(Plan::Checked)
        }
        // An engine checks a range with `check_range` on the rows it reads; there is no single
        // record to plan for.
        WriteOp::CheckRange { .. } => Err(Error::backend(
            "check a scanned range",
            "a range check reached the single-record planner",
        )),
        WriteOp::Delete {
            expect,
            expect_value,
            ..
        } => {
            check_expect(collection, key, *expect, state)?;
            check_value(collection, key, *expect, *expect_value, intact, state)?;
            Ok(match current {
                None => Plan::Absent,
                Some(_) => Plan::Delete {
                    release: intact.map(|current| current.blob_ref),
                },
            })
        }
    }
}

fn seal_of(collection: &str, key: &str, blob: &EncodedBlob, format: u8, meta: &RecordMeta) -> i64 {
    seal(
        collection.as_bytes(),
        key.as_bytes(),
        &blob.id,
        format,
        meta,
    )
}

/// The condition rule on the record a write replaces. `current` is its version and whether it
/// matches its seal (`None`: there is no record). A damaged record satisfies only
/// `Expect::Any`: its version cannot be trusted.
///
/// # Errors
/// `Error::Corrupt` for a condition on a damaged record, `Error::Conflict` for one not met.
pub(crate) fn check_expect(
    collection: &str,
    key: &str,
    expect: Expect,
    current: Option<(Version, bool)>,
) -> Result<()> {
    if current.is_some_and(|(_, is_intact)| !is_intact) && expect != Expect::Any {
        return Err(Error::corrupt_at(
            collection,
            key,
            "the record is damaged (it does not match its seal), so a conditional write \
             cannot trust its version: overwrite or delete it unconditionally, or restore it \
             from a backup",
        ));
    }
    let actual = current.map(|(version, _)| version);
    if expect.is_met_by(actual) {
        Ok(())
    } else {
        Err(Error::Conflict {
            collection: collection.to_owned(),
            key: key.to_owned(),
            expected: expect,
            actual,
        })
    }
}

/// A conflict unless the record is intact and points at `expected`, when given (`state`: its
/// version and whether it is intact, as for [`check_expect`]).
fn check_value<R>(
    collection: &str,
    key: &str,
    expect: Expect,
    expected: Option<BlobId>,
    intact: Option<&Current<R>>,
    state: Option<(Version, bool)>,
) -> Result<()> {
    match expected {
        Some(id) if intact.and_then(|current| current.blob_id) != Some(id) => {
            Err(Error::Conflict {
                collection: collection.to_owned(),
                key: key.to_owned(),
                expected: expect,
                actual: state.map(|(version, _)| version),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
