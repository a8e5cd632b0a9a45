//! The wall clock, as the crate stores it: milliseconds since the Unix epoch.
//!
//! **Invariant:** reading the clock never fails or panics: a clock set before 1970 reads 0, one
//! past `i64::MAX` milliseconds reads `i64::MAX`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
