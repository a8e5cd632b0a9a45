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
            ..
        } => {
            check_expect(collection, key, *expect, state)?;
            let meta = RecordMeta {
                version: current.map_or(Version::FIRST, |current| current.meta.version.next()),
                created_at_ms: intact.map_or(now_ms, |current| current.meta.created_at_ms),
                updated_at_ms: now_ms,
                size_bytes: blob.raw_len,
                access_count: intact.map_or(0, |current| current.meta.access_count),
                last_accessed_ms: intact.map_or(0, |current| current.meta.last_accessed_ms),
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
        WriteOp::Check { expect, .. } => {
            check_expect(collection, key, *expect, state)?;
            Ok(Plan::Checked)
        }
        // An engine checks a range with `check_range` on the rows it reads; there is no single
        // record to plan for.
        WriteOp::CheckRange { .. } => Err(Error::backend(
            "check a scanned range",
            "a range check reached the single-record planner",
        )),
        WriteOp::Delete { expect, .. } => {
            check_expect(collection, key, *expect, state)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Compression;

    const NOW: i64 = 5_000;

    fn blob(value: &[u8]) -> EncodedBlob {
        EncodedBlob::encode(value, Compression::default(), None)
    }

    /// A stored record of "k" in "c" at `version`, pointing at `value` through handle `blob_ref`.
    fn stored(version: u64, value: &[u8], blob_ref: i64) -> Current<i64> {
        let meta = RecordMeta {
            version: Version::new(version),
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            size_bytes: 3,
            access_count: 7,
            last_accessed_ms: 3_000,
        };
        let blob_id = blob(value).id;
        Current {
            blob_id: Some(blob_id),
            blob_ref,
            format: 1,
            meta,
            seal: seal(b"c", b"k", &blob_id, 1, &meta),
        }
    }

    fn put(value: &[u8], expect: Expect) -> WriteOp {
        WriteOp::Put {
            collection: "c".into(),
            key: "k".into(),
            blob: blob(value),
            format: 1,
            expect,
        }
    }

    fn delete(expect: Expect) -> WriteOp {
        WriteOp::Delete {
            collection: "c".into(),
            key: "k".into(),
            expect,
        }
    }

    /// Every state a record can be in: absent, intact at v1 or v2, damaged (seal or blob).
    fn states() -> Vec<(&'static str, Option<Current<i64>>)> {
        let mut tampered = stored(1, b"old", 10);
        tampered.seal ^= 1;
        let mut missing_blob = stored(1, b"old", 10);
        missing_blob.blob_id = None;
        vec![
            ("absent", None),
            ("v1", Some(stored(1, b"old", 10))),
            ("v2", Some(stored(2, b"old", 10))),
            ("tampered", Some(tampered)),
            ("blob missing", Some(missing_blob)),
        ]
    }

    fn expectations() -> [Expect; 4] {
        [
            Expect::Any,
            Expect::Absent,
            Expect::Version(Version::FIRST),
            Expect::Version(Version::new(2)),
        ]
    }

    /// What the condition rule should say, written from its definition.
    fn expected_verdict(expect: Expect, current: Option<&Current<i64>>) -> &'static str {
        let damaged = current.is_some_and(|current| !current.is_intact("c", "k"));
        let version = current.map(|current| current.meta.version);
        match expect {
            Expect::Any => "ok",
            _ if damaged => "corrupt",
            Expect::Absent if version.is_none() => "ok",
            Expect::Version(expected) if version == Some(expected) => "ok",
            _ => "conflict",
        }
    }

    fn verdict<T>(result: &Result<T>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(Error::Conflict { .. }) => "conflict",
            Err(Error::Corrupt { .. }) => "corrupt",
            Err(_) => "other",
        }
    }

    #[test]
    fn puts_over_every_expectation_and_state() {
        for (name, current) in states() {
            for expect in expectations() {
                for value in [&b"old"[..], b"new"] {
                    let op = put(value, expect);
                    let result = plan(&op, current.as_ref(), NOW);
                    let want = expected_verdict(expect, current.as_ref());
                    assert_eq!(verdict(&result), want, "{name} {expect:?} {value:?}");
                    let Ok(Plan::Put {
                        blob: planned,
                        format: 1,
                        meta,
                        seal: new_seal,
                        reference,
                        replaces,
                        release,
                    }) = result
                    else {
                        assert_ne!(want, "ok", "{name} {expect:?}: not a put plan");
                        continue;
                    };
                    let intact = current.filter(|current| current.is_intact("c", "k"));
                    // The version follows whatever is stored, damaged or not.
                    let version = current.map_or(1, |current| current.meta.version.get() + 1);
                    assert_eq!(meta.version.get(), version, "{name}");
                    assert_eq!(meta.updated_at_ms, NOW);
                    assert_eq!(meta.size_bytes, 3);
                    // Times and read counts carry over from an intact record only.
                    let (created, reads) = intact.map_or((NOW, 0), |_| (1_000, 7));
                    assert_eq!((meta.created_at_ms, meta.access_count), (created, reads));
                    assert_eq!(replaces, current.is_some(), "{name}");
                    let blob_id = blob(value).id;
                    assert_eq!(planned.id, blob_id);
                    assert_eq!(new_seal, seal(b"c", b"k", &blob_id, 1, &meta));
                    let same_value = intact.is_some_and(|c| c.blob_id == Some(blob_id));
                    if same_value {
                        assert_eq!(reference, Reference::Keep(10), "{name}");
                        assert_eq!(release, None, "{name}");
                    } else {
                        assert_eq!(reference, Reference::Add, "{name}");
                        assert_eq!(release, intact.map(|_| 10), "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn deletes_over_every_expectation_and_state() {
        for (name, current) in states() {
            for expect in expectations() {
                let op = delete(expect);
                let result = plan(&op, current.as_ref(), NOW);
                assert_eq!(
                    verdict(&result),
                    expected_verdict(expect, current.as_ref()),
                    "{name} {expect:?}"
                );
                let Ok(plan) = result else { continue };
                let intact = current.is_some_and(|current| current.is_intact("c", "k"));
                let want = match current {
                    None => Plan::Absent,
                    Some(_) if intact => Plan::Delete { release: Some(10) },
                    Some(_) => Plan::Delete { release: None },
                };
                assert_eq!(plan, want, "{name} {expect:?}");
            }
        }
    }

    #[test]
    fn checks_write_nothing_and_hold_only_when_the_condition_does() {
        for (name, current) in states() {
            for expect in expectations() {
                let op = WriteOp::Check {
                    collection: "c".into(),
                    key: "k".into(),
                    expect,
                };
                let result = plan(&op, current.as_ref(), NOW);
                assert_eq!(
                    verdict(&result),
                    expected_verdict(expect, current.as_ref()),
                    "{name} {expect:?}"
                );
                if let Ok(plan) = result {
                    assert_eq!(plan, Plan::Checked, "{name} {expect:?}");
                }
            }
        }
    }

    #[test]
    fn restores_keep_their_metadata_and_need_an_absent_key() {
        let meta = RecordMeta {
            version: Version::new(9),
            created_at_ms: 11,
            updated_at_ms: 12,
            size_bytes: 999,
            access_count: 4,
            last_accessed_ms: 13,
        };
        let value = blob(b"restored");
        let op = WriteOp::Restore {
            collection: "c".into(),
            key: "k".into(),
            blob: value.clone(),
            format: 1,
            meta,
        };
        for (name, current) in states() {
            let result = plan(&op, current.as_ref(), NOW);
            assert_eq!(
                verdict(&result),
                expected_verdict(Expect::Absent, current.as_ref()),
                "{name}"
            );
            if let Ok(plan) = result {
                let meta = RecordMeta {
                    size_bytes: value.raw_len,
                    ..meta
                };
                let want = Plan::Put {
                    blob: &value,
                    format: 1,
                    meta,
                    seal: seal(b"c", b"k", &value.id, 1, &meta),
                    reference: Reference::Add,
                    replaces: false,
                    release: None,
                };
                assert_eq!(plan, want, "{name}");
            }
        }
    }

    #[test]
    fn the_condition_rule_over_every_expectation_and_state() {
        let v1 = Version::FIRST;
        let v2 = Version::new(2);
        let states = [None, Some((v1, true)), Some((v2, true)), Some((v1, false))];
        let expectations = [Expect::Any, Expect::Absent, Expect::Version(v1)];
        for expect in expectations {
            for current in states {
                let result = check_expect("c", "k", expect, current);
                let damaged = current.is_some_and(|(_, intact)| !intact);
                match (expect, current) {
                    (Expect::Any, _) | (Expect::Absent, None) => {
                        assert!(result.is_ok(), "{expect:?} {current:?}");
                    }
                    (Expect::Version(expected), Some((version, true))) if expected == version => {
                        assert!(result.is_ok(), "{expect:?} {current:?}");
                    }
                    _ if damaged => assert!(
                        matches!(result, Err(Error::Corrupt { .. })),
                        "{expect:?} {current:?}"
                    ),
                    _ => assert!(
                        matches!(result, Err(Error::Conflict { .. })),
                        "{expect:?} {current:?}"
                    ),
                }
            }
        }
    }
}
