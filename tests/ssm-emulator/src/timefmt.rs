//! Wall-clock formats that appear on the SSM wire.
//!
//! The service mixes three shapes: epoch seconds as JSON numbers, ISO-8601
//! strings for GetCommandInvocation's execution times, and ISO-8601 durations
//! for `ExecutionElapsedTime`. SigV4 adds the compact `X-Amz-Date` form. They
//! are small enough to write here instead of pulling in a date library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Epoch seconds with millisecond precision, as the service sends `RequestedDateTime`.
pub(crate) fn epoch_seconds(t: SystemTime) -> f64 {
    let millis = since_epoch(t).as_millis();
    // Dividing an exact millisecond count keeps the shortest JSON form, e.g. 1582136283.089.
    millis as f64 / 1000.0
}

/// ISO-8601 with milliseconds and a `Z` suffix, e.g. `2023-05-12T12:49:12.236Z`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let since = since_epoch(t);
    let (date, secs_of_day) = split_days(since.as_secs());
    let (y, m, d) = civil_from_days(date);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since.subsec_millis()
    )
}

/// The compact SigV4 timestamp, e.g. `20261203T120000Z`.
pub(crate) fn amz_date(t: SystemTime) -> String {
    let (date, secs_of_day) = split_days(since_epoch(t).as_secs());
    let (y, m, d) = civil_from_days(date);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// An ISO-8601 duration as in `ExecutionElapsedTime`: `PT0.056S`, `PT1H0.271S`.
pub(crate) fn elapsed(d: Duration) -> String {
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut out = String::from("PT");
    if hours > 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}M"));
    }
    out.push_str(&format!("{seconds}.{:03}S", d.subsec_millis()));
    out
}

/// Parses the compact SigV4 form `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    from_parts(
        num(0..4)?,
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
        0,
    )
}

/// Parses an ISO-8601 date or date-time as accepted by the `InvokedAfter` filters.
///
/// Accepts `2024-01-02`, `2024-01-02T03:04:05Z` and an optional fraction.
pub(crate) fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let num = |part: &str| -> Option<u64> {
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (date, time) = match s.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (s, None),
    };
    let mut date_parts = date.splitn(3, '-');
    let y = num(date_parts.next()?)?;
    let m = num(date_parts.next()?)?;
    let d = num(date_parts.next()?)?;
    let Some(time) = time else {
        return from_parts(y, m, d, 0, 0, 0, 0);
    };
    let time = time.strip_suffix('Z').unwrap_or(time);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms_parts = hms.splitn(3, ':');
    let hh = num(hms_parts.next()?)?;
    let mm = num(hms_parts.next()?)?;
    let ss = num(hms_parts.next().unwrap_or("0"))?;
    let millis = match fraction {
        "" => 0,
        f if f.bytes().all(|b| b.is_ascii_digit()) => num(&format!("{f:0<3}")[..3])?,
        _ => return None,
    };
    from_parts(y, m, d, hh, mm, ss, millis)
}

fn from_parts(y: u64, m: u64, d: u64, hh: u64, mm: u64, ss: u64, ms: u64) -> Option<SystemTime> {
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    UNIX_EPOCH.checked_add(Duration::from_millis(secs.checked_mul(1000)? + ms))
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn split_days(secs: u64) -> (u64, u64) {
    (secs / 86_400, secs % 86_400)
}

/// Converts days since 1970-01-01 into a proleptic Gregorian date.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a cycle year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`], for years from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn iso_strings_match_the_service_shape() {
        assert_eq!(iso8601(at(1_683_895_752, 236)), "2023-05-12T12:49:12.236Z");
        assert_eq!(iso8601(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn epoch_seconds_keep_milliseconds() {
        assert_eq!(
            serde_json::to_string(&epoch_seconds(at(1_582_136_283, 89))).unwrap(),
            "1582136283.089"
        );
    }

    #[test]
    fn elapsed_time_omits_zero_hours_and_minutes() {
        assert_eq!(elapsed(Duration::from_millis(56)), "PT0.056S");
        assert_eq!(elapsed(Duration::from_millis(3_600_271)), "PT1H0.271S");
        assert_eq!(elapsed(Duration::from_millis(65_500)), "PT1M5.500S");
    }

    #[test]
    fn filter_times_with_odd_fractions_are_refused_not_split() {
        assert!(parse_iso8601("2024-01-02T03:04:05.5Z").is_some());
        assert_eq!(parse_iso8601("2024-01-02T03:04:05.12\u{e9}Z"), None);
        assert_eq!(parse_iso8601("2024-01-02T03:04:05.\u{e9}Z"), None);
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = at(1_796_300_000, 0);
        assert_eq!(parse_amz_date(&amz_date(t)), Some(t));
        assert_eq!(parse_amz_date("2026-12-03T120000Z"), None);
    }

    #[test]
    fn iso_filters_parse_dates_and_times() {
        assert_eq!(
            parse_iso8601("2023-05-12T12:49:12.236Z"),
            Some(at(1_683_895_752, 236))
        );
        assert_eq!(parse_iso8601("2023-05-12"), Some(at(1_683_849_600, 0)));
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
