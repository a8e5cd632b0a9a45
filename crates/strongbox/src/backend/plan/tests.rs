//! Unit tests of the write rule: every operation against every state a record can be in.

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
        expires_at_ms: None,
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
        expect_value: None,
        expires_at_ms: None,
    }
}

fn delete(expect: Expect) -> WriteOp {
    WriteOp::Delete {
        collection: "c".into(),
        key: "k".into(),
        expect,
        expect_value: None,
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
                expect_value: None,
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

/// A record expiring at `at`, intact (its seal covers the expiry).
fn expiring(at: i64) -> Current<i64> {
    let mut record = stored(1, b"old", 10);
    record.meta.expires_at_ms = Some(at);
    let blob_id = blob(b"old").id;
    record.seal = seal(b"c", b"k", &blob_id, 1, &record.meta);
    record
}

#[test]
fn a_record_expires_at_its_instant_and_only_when_intact() {
    assert!(!has_expired(Some(&expiring(NOW + 1)), "c", "k", NOW));
    assert!(has_expired(Some(&expiring(NOW)), "c", "k", NOW));
    assert!(has_expired(Some(&expiring(NOW - 1)), "c", "k", NOW));
    assert!(!has_expired(Some(&stored(1, b"old", 10)), "c", "k", NOW));
    assert!(!has_expired::<i64>(None, "c", "k", NOW));
    // An expiry that does not match the seal is damage, not an expiry.
    let mut tampered = expiring(NOW - 1);
    tampered.meta.expires_at_ms = Some(NOW - 2);
    assert!(!has_expired(Some(&tampered), "c", "k", NOW));
    let mut unsealed = stored(1, b"old", 10);
    unsealed.meta.expires_at_ms = Some(NOW - 1);
    assert!(!has_expired(Some(&unsealed), "c", "k", NOW));
}

#[test]
fn a_put_sets_the_expiry_it_carries_and_clears_an_old_one() {
    let mut op = put(b"new", Expect::Any);
    if let WriteOp::Put { expires_at_ms, .. } = &mut op {
        *expires_at_ms = Some(NOW + 500);
    }
    let Ok(Plan::Put { meta, .. }) = plan(&op, Some(&stored(1, b"old", 10)), NOW) else {
        panic!("a put on an intact record plans a put");
    };
    assert_eq!(meta.expires_at_ms, Some(NOW + 500));
    let op = put(b"new", Expect::Any);
    let Ok(Plan::Put { meta, .. }) = plan(&op, Some(&expiring(NOW + 9)), NOW) else {
        panic!("a put on an intact record plans a put");
    };
    assert_eq!(meta.expires_at_ms, None);
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
        expires_at_ms: Some(14),
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

#[test]
fn a_check_of_a_value_holds_only_when_the_record_points_at_it() {
    let check = |value: &[u8]| WriteOp::Check {
        collection: "c".into(),
        key: "k".into(),
        expect: Expect::Version(Version::new(1)),
        expect_value: Some(blob(value).id),
    };
    let current = stored(1, b"old", 10);
    assert_eq!(
        plan(&check(b"old"), Some(&current), NOW).ok(),
        Some(Plan::Checked)
    );
    // The same version holding another value: the write that was read did not commit.
    assert!(matches!(
        plan(&check(b"new"), Some(&current), NOW),
        Err(Error::Conflict { .. })
    ));
    let mut missing_blob = current;
    missing_blob.blob_id = None;
    assert!(plan(&check(b"old"), Some(&missing_blob), NOW).is_err());
    // A write or a delete conditioned on a value holds only where the check would.
    for (held, expected) in [(b"old", true), (b"new", false)] {
        let mut put = put(b"next", Expect::Version(Version::new(1)));
        let mut delete = delete(Expect::Version(Version::new(1)));
        for op in [&mut put, &mut delete] {
            if let WriteOp::Put { expect_value, .. } | WriteOp::Delete { expect_value, .. } = op {
                *expect_value = Some(blob(held).id);
            }
            assert_eq!(
                plan(op, Some(&current), NOW).is_ok(),
                expected,
                "{op:?} on a record holding \"old\""
            );
        }
    }
}
