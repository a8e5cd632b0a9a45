//! Unit tests of the staged writes' map.

use super::*;
use crate::codec::Compression;

fn put(version: u64) -> StagedValue {
    StagedValue::Put {
        version: Version::new(version),
        blob: Arc::new(EncodedBlob::encode(b"1", Compression::default(), None)),
        format: 0,
    }
}

fn key(name: &str) -> Key {
    ("c".to_owned(), name.to_owned())
}

fn version_of(staged: &Staged, name: &str) -> Option<Option<Version>> {
    staged.get("c", name).map(|read| read.value.version())
}

#[test]
fn a_staged_write_is_seen_until_its_commit_is_decided() {
    let staged = Staged::new(true);
    let guard = staged.stage(vec![(key("a"), put(2)), (key("b"), StagedValue::Absent)]);
    assert_eq!(version_of(&staged, "a"), Some(Some(Version::new(2))));
    assert_eq!(version_of(&staged, "b"), Some(None));
    assert!(staged.get("c", "z").is_none());
    let outcome = Arc::clone(&staged.get("c", "a").unwrap().outcome);
    guard.committed();
    assert!(!outcome.has_failed());
    assert!(staged.get("c", "a").is_none());
    assert!(staged.get("c", "b").is_none());
}

#[test]
fn a_commit_does_not_withdraw_what_was_staged_on_top_of_it() {
    let staged = Staged::new(true);
    let first = staged.stage(vec![(key("a"), put(2))]);
    let second = staged.stage(vec![(key("a"), put(3))]);
    first.committed();
    assert_eq!(version_of(&staged, "a"), Some(Some(Version::new(3))));
    second.committed();
    assert!(staged.get("c", "a").is_none());
}

#[test]
fn a_failed_commit_withdraws_what_was_staged_on_top_of_it() {
    let staged = Staged::new(true);
    let first = staged.stage(vec![(key("a"), put(2))]);
    let outcome = Arc::clone(&staged.get("c", "a").unwrap().outcome);
    let second = staged.stage(vec![(key("a"), put(3))]);
    drop(first);
    assert!(outcome.has_failed());
    assert!(
        staged.get("c", "a").is_none(),
        "3 was staged on the failed 2"
    );
    drop(second);
    // An older version staged after the failure is not the failed one's descendant.
    let failing = staged.stage(vec![(key("a"), put(5))]);
    let older = staged.stage(vec![(key("a"), put(4))]);
    drop(failing);
    assert_eq!(version_of(&staged, "a"), Some(Some(Version::new(4))));
    drop(older);
}

#[test]
fn nothing_is_staged_when_off() {
    let staged = Staged::new(false);
    let guard = staged.stage(vec![(key("a"), put(2))]);
    assert!(staged.get("c", "a").is_none());
    guard.committed();
}
