//! When to ask SSM again: the polling schedule, retry backoff and time stamps.
//!
//! A command's result is polled soon after sending, then with pauses growing
//! ×1.5 up to a cap. A session remembers how long its recent commands took and
//! puts one poll where the next command is likely to have finished, so a
//! command of a familiar length costs few polls and little added latency. All
//! of this is arithmetic on durations, so it is tested without a clock.

use std::time::Duration;

/// Growth of the pause between two polls of one command.
const GROWTH: f64 = 1.5;
/// Margin after the expected finish before polling, for the service to catch up.
const HINT_MARGIN: Duration = Duration::from_millis(15);
/// Hints beyond this are not used: such commands are not worth predicting.
const HINT_MAX: Duration = Duration::from_secs(300);

/// The poll times of one command, relative to when it was sent.
#[derive(Debug, Clone)]
pub struct Poller {
    initial: Duration,
    gap: Duration,
    max: Duration,
    hint: Option<Duration>,
    next: Duration,
}

impl Poller {
    /// A schedule that first polls after `initial`, pauses at most `max`
    /// between polls and, with a `hint`, polls once at the expected finish.
    pub fn new(initial: Duration, max: Duration, hint: Option<Duration>) -> Poller {
        let hint = hint.filter(|h| *h <= HINT_MAX).map(|h| h + HINT_MARGIN);
        let first = match hint {
            Some(h) if h < initial => h,
            _ => initial,
        };
        Poller {
            initial,
            gap: initial,
            max: max.max(initial),
            hint,
            next: first,
        }
    }

    /// When to poll next, as time since sending.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Move on after a poll at `at` (time since sending) found the command
    /// still running.
    pub fn advance(&mut self, at: Duration) {
        match self.hint {
            Some(h) if h > at + Duration::from_millis(5) => {
                self.next = h.min(at + self.max);
                return;
            }
            // The expected finish passed with the command still running: it
            // is probably about to end, so look again soon and back off
            // from there.
            Some(_) => self.gap = self.gap.min(self.initial / 2),
            None => self.gap = self.gap.mul_f64(GROWTH).min(self.max),
        }
        self.hint = None;
        self.next = at + self.gap;
    }
}

/// A session's estimate of how long its commands take to finish: an
/// exponentially weighted mean of recent ones, plus their typical deviation
/// from it, so that a poll at the estimate usually finds the command done.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint {
    mean: Option<Duration>,
    deviation: Duration,
}

impl Hint {
    /// The current estimate, if any command has finished yet.
    pub fn get(&self) -> Option<Duration> {
        self.mean.map(|mean| mean + self.deviation)
    }

    /// Record that a command finished `took` after it was sent.
    pub fn record(&mut self, took: Duration) {
        self.mean = Some(match self.mean {
            None => took,
            Some(mean) => {
                let error = mean.abs_diff(took);
                self.deviation = (self.deviation * 3 + error) / 4;
                (mean + took) / 2
            }
        });
    }
}

/// The pause before retry `attempt` (0 for the first retry): a random
/// duration up to `base × 2^attempt`, capped ("full jitter").
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32, random: u64) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(20)).min(cap);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(random % (millis + 1))
}

/// Milliseconds since the Unix epoch of an ISO 8601 UTC time such as
/// `2023-05-12T12:49:12.236Z`, as SSM writes `ExecutionEndDateTime`.
pub fn parse_iso8601_ms(text: &str) -> Option<i64> {
    let text = text
        .trim()
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let millis = match frac.len() {
        0 => 0,
        n => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            if !frac.bytes().all(|b| b.is_ascii_digit()) || n > 9 {
                return None;
            }
            digits.parse::<i64>().ok()?
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// An ISO 8601 UTC time, to the second, for milliseconds since the epoch.
pub fn format_iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The poll times of a command that never finishes, up to `until`.
    fn times(mut p: Poller, until: Duration) -> Vec<u64> {
        let mut out = Vec::new();
        while p.next() <= until {
            out.push(p.next().as_millis() as u64);
            let at = p.next();
            p.advance(at);
        }
        out
    }

    #[test]
    fn polls_start_soon_and_back_off_to_the_cap() {
        let got = times(Poller::new(ms(100), ms(2000), None), ms(10_000));
        assert_eq!(&got[..6], &[100, 250, 475, 812, 1318, 2078]);
        let gaps: Vec<u64> = got.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 2000));
        assert_eq!(*gaps.last().unwrap(), 2000);
    }

    #[test]
    fn a_hint_puts_one_poll_at_the_expected_finish() {
        let got = times(Poller::new(ms(100), ms(2000), Some(ms(1000))), ms(1500));
        // After the expected finish passes, the pauses start short again.
        assert_eq!(got, vec![100, 1015, 1065, 1140, 1252, 1421]);
    }

    #[test]
    fn a_far_hint_still_polls_at_least_every_cap() {
        let got = times(Poller::new(ms(100), ms(2000), Some(ms(5000))), ms(5100));
        assert_eq!(got, vec![100, 2100, 4100, 5015, 5065]);
    }

    #[test]
    fn a_short_hint_moves_the_first_poll_earlier() {
        let got = times(Poller::new(ms(100), ms(2000), Some(ms(20))), ms(300));
        assert_eq!(got, vec![35, 85, 160, 272]);
    }

    #[test]
    fn a_command_of_familiar_length_is_found_with_few_polls() {
        let mut hint = Hint::default();
        hint.record(ms(1100));
        hint.record(ms(1000));
        let finish = ms(1040);
        let mut p = Poller::new(ms(100), ms(2000), hint.get());
        let mut polls = 1;
        while p.next() < finish {
            let at = p.next();
            p.advance(at);
            polls += 1;
        }
        assert_eq!(polls, 2);
        assert!(p.next() - finish <= ms(50), "added {:?}", p.next() - finish);
    }

    #[test]
    fn the_hint_allows_for_how_much_commands_vary() {
        let mut steady = Hint::default();
        let mut jumpy = Hint::default();
        for took in [1000, 1000, 1000, 1000] {
            steady.record(ms(took));
        }
        for took in [900, 1100, 900, 1100] {
            jumpy.record(ms(took));
        }
        assert_eq!(steady.get(), Some(ms(1000)));
        assert!(jumpy.get().unwrap() > ms(1050), "{:?}", jumpy.get());
    }

    #[test]
    fn jitter_stays_under_the_growing_ceiling() {
        for attempt in 0..10 {
            let ceiling = ms(100 << attempt).min(ms(5000));
            for r in [0, 1, 99, 12345, u64::MAX] {
                assert!(full_jitter(ms(100), ms(5000), attempt, r) <= ceiling);
            }
        }
        assert_eq!(full_jitter(ms(100), ms(5000), 0, 0), ms(0));
    }

    #[test]
    fn iso8601_round_trips() {
        let t = parse_iso8601_ms("2023-05-12T12:49:12.236Z").unwrap();
        assert_eq!(t, 1_683_895_752_236);
        assert_eq!(format_iso8601(t), "2023-05-12T12:49:12Z");
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(format_iso8601(1_709_251_199_500), "2024-02-29T23:59:59Z");
        assert_eq!(parse_iso8601_ms(""), None);
        assert_eq!(parse_iso8601_ms("2023-13-01T00:00:00Z"), None);
    }
}
