//! The wall clock, read one way everywhere: milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch (0 for a clock set before 1970; saturates far in the
/// future).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
