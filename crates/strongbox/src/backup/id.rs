//! [`BackupId`]: the name of a backup, sortable by time, and its fixed shape.
//!
//! **Invariant:** a `BackupId` always has the shape `YYYYMMDDTHHMMSSZ-xxxxxxxx` (UTC time to
//! the second, then 8 lowercase hex digits), so it can never name a path outside `manifests/`.

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Length of an id: 16 characters of time, a dash, 8 hex digits.
const ID_LEN: usize = 25;

const MS_PER_DAY: i64 = 86_400_000;

/// The id of a backup, such as `20261128T071500Z-3f9a2c01`: its UTC creation time to the
/// second, then 32 random bits, so ids sort by time and never collide in practice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    /// `Error::InvalidName` when `text` does not have the shape of an id (for example a path).
    pub fn parse(text: &str) -> Result<Self> {
        let bytes = text.as_bytes();
        let is_valid = bytes.len() == ID_LEN
            && bytes.iter().enumerate().all(|(at, byte)| match at {
                8 => *byte == b'T',
                15 => *byte == b'Z',
                16 => *byte == b'-',
                0..=14 => byte.is_ascii_digit(),
                _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(byte),
            })
            && parse_time_ms(text).is_some();
        if !is_valid {
            return Err(Error::InvalidName {
                what: "backup id",
                name: shorten(text),
                reason: "is not a backup id like 20261128T071500Z-3f9a2c01 (see backup list)",
            });
        }
        Ok(BackupId(text.to_owned()))
    }

    /// A new id for a backup taken at `now_ms`.
    pub(crate) fn generate(now_ms: i64) -> Self {
        BackupId(format!("{}-{:08x}", format_time(now_ms), random_u32()))
    }

    /// A new id for a backup taken at `now_ms` that sorts after `after` (a differential
    /// backup's base): random within the same second, above `after`'s random part. `None`
    /// when `after` is of a later second, or holds the last id of its second.
    pub(crate) fn generate_after(now_ms: i64, after: &BackupId) -> Option<Self> {
        let time = format_time(now_ms);
        let (after_time, after_random) = after.0.split_once('-')?;
        match time.as_str().cmp(after_time) {
            std::cmp::Ordering::Greater => Some(BackupId::generate(now_ms)),
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => {
                let above = u32::from_str_radix(after_random, 16).ok()?.checked_add(1)?;
                let span = u64::from(u32::MAX - above) + 1;
                let random = u64::from(above) + u64::from(random_u32()) % span;
                Some(BackupId(format!("{time}-{random:08x}")))
            }
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The creation time the id carries, to the second, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> i64 {
        parse_time_ms(&self.0).unwrap_or(0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        BackupId::parse(text)
    }
}

/// 32 random bits (from the standard library's randomly keyed hasher), for unique names.
pub(crate) fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = std::hash::RandomState::new().hash_one((
        std::time::SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ));
    // The low half of a 64-bit hash: the truncation is the point.
    (random & 0xffff_ffff) as u32
}

/// `YYYYMMDDTHHMMSSZ` for a time in milliseconds since the Unix epoch.
fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let seconds = ms.rem_euclid(MS_PER_DAY) / 1000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The time at the start of an id, in milliseconds since the Unix epoch.
fn parse_time_ms(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The first 64 bytes of a rejected id, for the error message.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The UTC day of a time, counted from 1970-01-01.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// The ISO week (Monday to Sunday) of a time, counted from the week of 1970-01-01.
pub(crate) fn week_of(ms: i64) -> i64 {
    // 1970-01-01 was a Thursday: shift so that weeks start on Mondays.
    (day_of(ms) + 3).div_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_their_time() -> Result<()> {
        // 2026-11-28T07:15:00Z
        let ms = 1_795_850_100_000;
        let id = BackupId::generate(ms + 123);
        assert!(id.as_str().starts_with("20261128T071500Z-"), "{id}");
        assert_eq!(BackupId::parse(id.as_str())?, id);
        assert_eq!(id.time_ms(), ms);
        assert_eq!(format_time(0), "19700101T000000Z");
        assert_eq!(parse_time_ms("20000229T235959Z"), Some(951_868_799_000));
        Ok(())
    }

    #[test]
    fn paths_and_near_misses_are_not_ids() {
        for text in [
            "../../etc/passwd",
            "",
            "latest",
            "20261128T071500Z-3f9a2c0",
            "20261128T071500Z-3f9a2c0G",
            "20261128T071500Z-3F9A2C01",
            "20261328T071500Z-3f9a2c01",
            "20261128T071500Z/3f9a2c01",
            "20261128T071500Z-3f9a2c01/..",
        ] {
            assert!(BackupId::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn an_id_after_another_sorts_after_it_or_is_none() -> Result<()> {
        let ms = 1_795_850_100_000;
        for base in ["20261128T071500Z-00000000", "20261128T071500Z-fffffffe"] {
            let base = BackupId::parse(base)?;
            for _ in 0..100 {
                let id = BackupId::generate_after(ms + 999, &base).unwrap();
                assert!(id > base && BackupId::parse(id.as_str())? == id, "{id}");
            }
        }
        let last = BackupId::parse("20261128T071500Z-ffffffff")?;
        assert_eq!(BackupId::generate_after(ms, &last), None);
        let later = BackupId::parse("20261128T071501Z-00000000")?;
        assert_eq!(BackupId::generate_after(ms, &later), None);
        let earlier = BackupId::parse("20261128T071459Z-ffffffff")?;
        assert!(BackupId::generate_after(ms, &earlier).is_some_and(|id| id > earlier));
        Ok(())
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday, 2026-11-29 a Sunday, 2026-11-30 a Monday.
        let monday = days_from_civil(2026, 11, 23) * MS_PER_DAY;
        let sunday = days_from_civil(2026, 11, 29) * MS_PER_DAY + 86_399_000;
        let next_monday = days_from_civil(2026, 11, 30) * MS_PER_DAY;
        assert_eq!(week_of(monday), week_of(sunday));
        assert_eq!(week_of(sunday) + 1, week_of(next_monday));
    }
}
