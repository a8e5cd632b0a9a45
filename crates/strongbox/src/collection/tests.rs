//! Unit tests of `Scan`: prefixes, ranges and their intersection.

use super::*;

#[test]
fn scans_are_built_from_prefixes_and_ranges() {
    let prefix = Scan::prefix("table-7:");
    assert_eq!(prefix.start, Bound::Included("table-7:".to_owned()));
    assert_eq!(prefix.end, Bound::Excluded("table-7;".to_owned()));
    let range = Scan::range("a".."m").reverse().limit(3);
    assert_eq!(range.start, Bound::Included("a".to_owned()));
    assert_eq!(range.end, Bound::Excluded("m".to_owned()));
    assert!(range.reverse);
    assert_eq!(range.limit, Some(3));
    assert_eq!(Scan::range("k"..).end, Bound::Unbounded);
}

#[test]
fn within_keeps_the_tighter_bound_on_each_side() {
    let narrowed = Scan::prefix("t07-").within("t07-r0100"..);
    assert_eq!(narrowed.start, Bound::Included("t07-r0100".to_owned()));
    assert_eq!(narrowed.end, Bound::Excluded("t07.".to_owned()));
    let narrowed = Scan::prefix("t07-").within("a".."t07-r0200");
    assert_eq!(narrowed.start, Bound::Included("t07-".to_owned()));
    assert_eq!(narrowed.end, Bound::Excluded("t07-r0200".to_owned()));
    let same_key = Scan::range("a"..="m").within("a".."m");
    assert_eq!(same_key.end, Bound::Excluded("m".to_owned()));
    let open = Scan::all().within((Bound::Excluded("k"), Bound::Unbounded));
    assert_eq!(open.start, Bound::Excluded("k".to_owned()));
    assert_eq!(open.end, Bound::Unbounded);
    let reversed = Scan::prefix("b").reverse().limit(2).within(.."c");
    assert!(reversed.reverse);
    assert_eq!(reversed.limit, Some(2));
    assert_eq!(reversed.end, Bound::Excluded("c".to_owned()));
}
