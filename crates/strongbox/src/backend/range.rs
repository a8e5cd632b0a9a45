//! The range rule: how a transaction's scan is validated at commit, so that a range it read
//! conflicts when a key in it changes, disappears or appears (a phantom).
//!
//! **Invariant:** a range check passes only when the rows the range selects now, with the
//! limit the scan used, are exactly the keys and versions the scan saw.

use crate::error::{Error, Result};
use crate::record::{Expect, Version};

/// Checks a scanned range at commit: `found`, the `(key, version)` rows the engine reads now
/// with the same range and limit, must equal `seen`, what the transaction's scan read.
///
/// # Errors
/// `Error::Conflict` naming the first key in the scan's order that differs: one changed (the
/// version seen expected), deleted (found absent) or inserted (expected absent: a phantom).
pub(crate) fn check_range(
    collection: &str,
    reverse: bool,
    seen: &[(String, Version)],
    found: &[(String, Version)],
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
            (Some((key, version)), None) => {
                return Err(conflict(key, Expect::Version(*version), None));
            }
            (None, Some((key, version))) => {
                return Err(conflict(key, Expect::Absent, Some(*version)));
            }
            (Some((seen_key, seen_version)), Some((found_key, found_version))) => {
                if seen_key == found_key {
                    if seen_version != found_version {
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

    fn rows(rows: &[(&str, u64)]) -> Vec<(String, Version)> {
        rows.iter()
            .map(|(key, version)| ((*key).to_owned(), Version::new(*version)))
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
}
