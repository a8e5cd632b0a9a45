//! The range rule: how a transaction's scan is validated at commit, so that a range it read
//! conflicts when a key in it changes, disappears or appears (a phantom).
//!
//! **Invariant:** a range check passes only when the rows the range selects now, with the
//! limit the scan used, are exactly the keys, versions and values the scan saw.

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::{Expect, Version};

/// A row of a scanned range: its key, version and value id (`None`: the value is missing,
/// which no scan saw). The value counts as well as the version: a key deleted and created
/// again starts again at version 1.
pub(crate) type RangeRow = (String, Version, Option<BlobId>);

/// Checks a scanned range at commit: `found`, the rows the engine reads now with the same
/// range and limit, must equal `seen`, what the transaction's scan read.
///
/// # Errors
/// `Error::Conflict` naming the first key in the scan's order that differs: one changed (the
/// version seen expected), deleted (found absent) or inserted (expected absent: a phantom).
pub(crate) fn check_range(
    collection: &str,
    reverse: bool,
    seen: &[RangeRow],
    found: &[RangeRow],
) -> Result<()> {
    let conflict = |key: &str, expected: Expect, actual: Option<Version>| Error::Conflict {
        collection: collection.to_owned(),
        key: key.to_owned(),
        expected,
        actual,
    };
    let mut seen = seen.iter();
    let mut found = found.iter();
    loop {
        match (seen.next(), found.next()) {
            (None, None) => return Ok(()),
            (Some((key, version, _)), None) => {
                return Err(conflict(key, Expect::Version(*version), None));
            }
            (None, Some((key, version, _))) => {
                return Err(conflict(key, Expect::Absent, Some(*version)));
            }
            (
                Some((seen_key, seen_version, seen_value)),
                Some((found_key, found_version, found_value)),
            ) => {
                if seen_key == found_key {
                    if seen_version != found_version || seen_value != found_value {
                        return Err(conflict(
                            seen_key,
                            Expect::Version(*seen_version),
                            Some(*found_version),
                        ));
                    }
                    continue;
                }
                // The key that comes first in the scan's order is the one that differs: found
                // first, it was inserted; seen first, it was deleted.
                let found_first = (found_key < seen_key) != reverse;
                return Err(if found_first {
                    conflict(found_key, Expect::Absent, Some(*found_version))
                } else {
                    conflict(seen_key, Expect::Version(*seen_version), None)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose value ids are their version's (so a value differs when its version does).
    fn rows(rows: &[(&str, u64)]) -> Vec<RangeRow> {
        rows.iter()
            .map(|(key, version)| {
                let value = BlobId::of(&version.to_le_bytes());
                ((*key).to_owned(), Version::new(*version), Some(value))
            })
            .collect()
    }

    /// The key and the expectation of the conflict `check_range` returns.
    fn conflict(
        reverse: bool,
        seen: &[(&str, u64)],
        found: &[(&str, u64)],
    ) -> Option<(String, Expect, Option<Version>)> {
        match check_range("c", reverse, &rows(seen), &rows(found)) {
            Ok(()) => None,
            Err(Error::Conflict {
                key,
                expected,
                actual,
                ..
            }) => Some((key, expected, actual)),
            Err(other) => panic!("not a conflict: {other}"),
        }
    }

    #[test]
    fn a_range_conflicts_on_a_change_a_delete_and_a_phantom_in_either_order() {
        let v = Version::new;
        assert_eq!(
            conflict(false, &[("a", 1), ("c", 2)], &[("a", 1), ("c", 2)]),
            None
        );
        assert_eq!(conflict(false, &[], &[]), None);
        assert_eq!(
            conflict(false, &[("a", 1), ("c", 2)], &[("a", 1), ("c", 3)]),
            Some(("c".into(), Expect::Version(v(2)), Some(v(3))))
        );
        assert_eq!(
            conflict(
                false,
                &[("a", 1), ("c", 2)],
                &[("a", 1), ("b", 1), ("c", 2)]
            ),
            Some(("b".into(), Expect::Absent, Some(v(1))))
        );
        assert_eq!(
            conflict(false, &[("a", 1), ("c", 2)], &[("c", 2)]),
            Some(("a".into(), Expect::Version(v(1)), None))
        );
        assert_eq!(
            conflict(true, &[("c", 2), ("a", 1)], &[("c", 2), ("b", 1), ("a", 1)]),
            Some(("b".into(), Expect::Absent, Some(v(1))))
        );
        assert_eq!(
            conflict(true, &[("c", 2), ("a", 1)], &[("a", 1)]),
            Some(("c".into(), Expect::Version(v(2)), None))
        );
        assert_eq!(
            conflict(false, &[], &[("z", 4)]),
            Some(("z".into(), Expect::Absent, Some(v(4))))
        );
        assert_eq!(
            conflict(false, &[("z", 4)], &[]),
            Some(("z".into(), Expect::Version(v(4)), None))
        );
    }

    #[test]
    fn a_key_back_at_the_version_seen_with_another_value_conflicts() {
        let seen = rows(&[("a", 1), ("b", 1)]);
        let mut found = seen.clone();
        found[1].2 = Some(BlobId::of(b"another value"));
        let error = check_range("c", false, &seen, &found);
        assert!(
            matches!(&error, Err(Error::Conflict { key, .. }) if key == "b"),
            "{error:?}"
        );
        found[1].2 = None;
        assert!(check_range("c", false, &seen, &found).is_err());
    }
}
