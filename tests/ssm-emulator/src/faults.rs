//! Fault injection: throttling, injected errors and resets, and the latencies that
//! make the emulator behave like a busy, eventually consistent service.
//!
//! A [`Faults`] value is plain data that can be set at start, through the handle,
//! or as JSON through `POST /_emulator/faults`. [`FaultState`] holds the value in
//! effect together with the token buckets it implies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The throttle key that applies to every operation without its own entry.
pub const ANY_OPERATION: &str = "*";

/// Fault injection and latency settings, changeable while the emulator runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Token buckets per operation name (`SendCommand`, ..., or `*` for the rest).
    pub throttle: BTreeMap<String, Throttle>,
    /// Fraction of API calls answered with `500 InternalServerError`, 0.0 to 1.0.
    pub error_rate: f64,
    /// Fraction of API calls whose connection is reset instead of answered, 0.0 to 1.0.
    pub reset_rate: f64,
    /// Delay added before every API response, in milliseconds.
    pub response_delay_ms: u64,
    /// How long after SendCommand its invocations stay invisible (`InvocationDoesNotExist`
    /// and an empty ListCommandInvocations), in milliseconds.
    pub invocation_does_not_exist_ms: u64,
    /// How long the agent takes to pick a command up, drawn uniformly from this range.
    pub agent_latency_ms: LatencyRange,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            throttle: BTreeMap::new(),
            error_rate: 0.0,
            reset_rate: 0.0,
            response_delay_ms: 0,
            invocation_does_not_exist_ms: 0,
            agent_latency_ms: LatencyRange { min: 5, max: 20 },
        }
    }
}

/// Longest wait a fault may add, in milliseconds: one day.
const MAX_WAIT_MS: u64 = 86_400_000;

impl Faults {
    /// Latencies resembling the real service: pickup in 0.1–0.7 s and invocations that
    /// appear half a second after SendCommand.
    pub fn realistic() -> Faults {
        Faults {
            invocation_does_not_exist_ms: 500,
            agent_latency_ms: LatencyRange { min: 100, max: 700 },
            response_delay_ms: 20,
            ..Faults::default()
        }
    }

    /// Rejects rates outside 0..=1, inverted ranges, waits over a day and
    /// non-positive throttle rates.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.agent_latency_ms.min > self.agent_latency_ms.max {
            return Err("agent latency minimum exceeds its maximum".into());
        }
        // Longer waits would overflow deadlines; a day is already forever here.
        for (name, ms) in [
            ("agent_latency_ms", self.agent_latency_ms.max),
            ("response_delay_ms", self.response_delay_ms),
            (
                "invocation_does_not_exist_ms",
                self.invocation_does_not_exist_ms,
            ),
        ] {
            if ms > MAX_WAIT_MS {
                return Err(format!("{name} must be at most {MAX_WAIT_MS}, got {ms}"));
            }
        }
        for (op, throttle) in &self.throttle {
            if !(throttle.rate.is_finite() && throttle.rate > 0.0) || throttle.burst == 0 {
                return Err(format!("throttle for {op} needs a positive rate and burst"));
            }
        }
        Ok(())
    }

    /// Applies the keys present in a JSON object on top of these settings.
    pub fn merged_with(&self, patch: &serde_json::Value) -> Result<Faults, String> {
        let serde_json::Value::Object(patch) = patch else {
            return Err("faults must be a JSON object".into());
        };
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let serde_json::Value::Object(fields) = &mut current {
            for (key, value) in patch {
                fields.insert(key.clone(), value.clone());
            }
        }
        let merged: Faults = serde_json::from_value(current).map_err(|e| e.to_string())?;
        merged.validate()?;
        Ok(merged)
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Sustained calls per second.
    pub rate: f64,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
}

impl Throttle {
    /// Parses `OP=RATE:BURST`, the form of `--throttle`.
    pub fn parse_flag(s: &str) -> Result<(String, Throttle), String> {
        let (op, spec) = s
            .split_once('=')
            .ok_or("throttle must look like OP=RATE:BURST")?;
        let (rate, burst) = spec
            .split_once(':')
            .ok_or("throttle must look like OP=RATE:BURST")?;
        let rate: f64 = rate
            .parse()
            .map_err(|_| format!("invalid throttle rate {rate:?}"))?;
        let burst: u32 = burst
            .parse()
            .map_err(|_| format!("invalid throttle burst {burst:?}"))?;
        if op.is_empty() || !(rate.is_finite() && rate > 0.0) || burst == 0 {
            return Err("throttle needs an operation, a positive rate and a positive burst".into());
        }
        Ok((op.to_owned(), Throttle { rate, burst }))
    }
}

/// An inclusive range of milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRange {
    /// Shortest delay.
    pub min: u64,
    /// Longest delay.
    pub max: u64,
}

impl LatencyRange {
    /// A fixed delay.
    pub fn fixed(ms: u64) -> LatencyRange {
        LatencyRange { min: ms, max: ms }
    }

    /// Draws a delay from the range.
    pub(crate) fn sample(self) -> Duration {
        Duration::from_millis(fastrand::u64(self.min..=self.max.max(self.min)))
    }
}

/// The faults in effect and the token buckets they imply.
pub(crate) struct FaultState {
    inner: Mutex<Inner>,
}

struct Inner {
    faults: Faults,
    buckets: HashMap<String, Bucket>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What to do with one API call before handling it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handle it normally.
    Serve,
    /// Answer `ThrottlingException`.
    Throttle,
    /// Answer `InternalServerError`.
    InternalError,
    /// Drop the connection without an answer.
    Reset,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> FaultState {
        FaultState {
            inner: Mutex::new(Inner {
                faults,
                buckets: HashMap::new(),
            }),
        }
    }

    /// The settings in effect.
    pub(crate) fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the settings; buckets start full again.
    pub(crate) fn set(&self, faults: Faults) {
        let mut inner = self.lock();
        inner.faults = faults;
        inner.buckets.clear();
    }

    /// Decides the fate of one call to `operation`.
    pub(crate) fn verdict(&self, operation: &str, now: Instant) -> Verdict {
        let mut inner = self.lock();
        let Inner { faults, buckets } = &mut *inner;
        // Under the wildcard each operation still gets a bucket of its own.
        let throttle = faults
            .throttle
            .get(operation)
            .or_else(|| faults.throttle.get(ANY_OPERATION));
        if let Some(throttle) = throttle {
            let bucket = buckets.entry(operation.to_owned()).or_insert(Bucket {
                tokens: f64::from(throttle.burst),
                updated: now,
            });
            if !bucket.take(throttle, now) {
                return Verdict::Throttle;
            }
        }
        if faults.reset_rate > 0.0 && fastrand::f64() < faults.reset_rate {
            return Verdict::Reset;
        }
        if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
            return Verdict::InternalError;
        }
        Verdict::Serve
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Bucket {
    fn take(&mut self, throttle: &Throttle, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * throttle.rate;
        self.tokens = (self.tokens + refill).min(f64::from(throttle.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled(rate: f64, burst: u32) -> FaultState {
        let mut faults = Faults::default();
        faults
            .throttle
            .insert("SendCommand".into(), Throttle { rate, burst });
        FaultState::new(faults)
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let state = throttled(10.0, 2);
        let t0 = Instant::now();
        assert_eq!(state.verdict("SendCommand", t0), Verdict::Serve);
        assert_eq!(state.verdict("SendCommand", t0), Verdict::Serve);
        assert_eq!(state.verdict("SendCommand", t0), Verdict::Throttle);
        assert_eq!(
            state.verdict("SendCommand", t0 + Duration::from_millis(100)),
            Verdict::Serve
        );
        assert_eq!(state.verdict("ListCommands", t0), Verdict::Serve);
    }

    #[test]
    fn wildcard_throttle_covers_other_operations_separately() {
        let mut faults = Faults::default();
        faults.throttle.insert(
            ANY_OPERATION.into(),
            Throttle {
                rate: 0.001,
                burst: 1,
            },
        );
        let state = FaultState::new(faults);
        let t0 = Instant::now();
        assert_eq!(state.verdict("ListCommands", t0), Verdict::Serve);
        assert_eq!(state.verdict("ListCommands", t0), Verdict::Throttle);
        assert_eq!(state.verdict("SendCommand", t0), Verdict::Serve);
    }

    #[test]
    fn patches_replace_only_the_keys_given() {
        let patch = serde_json::json!({"error_rate": 0.5});
        let merged = Faults::realistic().merged_with(&patch).unwrap();
        assert_eq!(merged.error_rate, 0.5);
        assert_eq!(
            merged.agent_latency_ms,
            Faults::realistic().agent_latency_ms
        );
        assert!(
            Faults::default()
                .merged_with(&serde_json::json!({"error_rate": 2}))
                .is_err()
        );
        assert!(
            Faults::default()
                .merged_with(&serde_json::json!({"bogus": 1}))
                .is_err()
        );
    }

    #[test]
    fn waits_longer_than_a_day_are_refused() {
        let patch = serde_json::json!({"invocation_does_not_exist_ms": u64::MAX});
        let err = Faults::default()
            .merged_with(&patch)
            .and_then(|f| f.validate());
        assert!(err.is_err_and(|e| e.contains("invocation_does_not_exist_ms")));
        let day = Faults {
            response_delay_ms: MAX_WAIT_MS,
            ..Faults::default()
        };
        assert!(day.validate().is_ok());
    }

    #[test]
    fn throttle_flags_parse() {
        let (op, t) = Throttle::parse_flag("GetCommandInvocation=5:10").unwrap();
        assert_eq!(
            (op.as_str(), t.rate, t.burst),
            ("GetCommandInvocation", 5.0, 10)
        );
        assert!(Throttle::parse_flag("GetCommandInvocation=5").is_err());
        assert!(Throttle::parse_flag("X=0:1").is_err());
    }
}
