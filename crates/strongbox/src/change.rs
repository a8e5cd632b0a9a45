//! [`Change`] and [`ChangeKind`]: one entry of the change feed, as plain data.
//!
//! Both engines produce these from their `changes` tables and the store hands them out
//! unchanged (`Store::changes`, `Store::subscribe`). **Invariant:** no I/O; a change's
//! `seq` is store-wide and strictly increasing in commit order.

use crate::blob::BlobId;
use crate::record::Version;

/// What a committed write did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// The record was created or replaced (a put, a transaction's write, a restore).
    Put,
    /// The record was deleted.
    Delete,
    /// The record expired.
    Expired,
}

impl ChangeKind {
    /// The stable name of the kind: `"put"`, `"delete"` or `"expired"` (the CLI's JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
            ChangeKind::Expired => "expired",
        }
    }

    /// The number an engine stores for the kind. Never changes.
    pub(crate) fn code(self) -> u8 {
        match self {
            ChangeKind::Put => 1,
            ChangeKind::Delete => 2,
            ChangeKind::Expired => 3,
        }
    }

    /// The kind an engine stored as `code`; `None` for a number no kind has (damage).
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(ChangeKind::Put),
            2 => Some(ChangeKind::Delete),
            3 => Some(ChangeKind::Expired),
            _ => None,
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One committed change to a record, from the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number: store-wide, strictly increasing in commit order. A reader that
    /// has seen a number never later finds a new change below it.
    pub seq: u64,
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// The record's version after a put; the version deleted or expired otherwise.
    pub version: Version,
    /// When the change committed, in milliseconds since the Unix epoch (the writer's clock).
    pub at_ms: i64,
    /// The id of the value written (a put); `None` for a delete or an expiry.
    pub blob_id: Option<BlobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_stored_code() {
        for kind in [ChangeKind::Put, ChangeKind::Delete, ChangeKind::Expired] {
            assert_eq!(ChangeKind::from_code(i64::from(kind.code())), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(ChangeKind::from_code(0), None);
    }
}
