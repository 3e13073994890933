//! SSM requests with retries, over whatever carries them.
//!
//! [`Host`] is the seam between protocol logic and the outside world: one
//! HTTP exchange, the clocks, randomness and logging. The component uses the
//! wasi:http implementation in `wasi`; tests use a fake. [`Client`] adds the
//! retry rules: throttling, 5xx answers and network failures are retried with
//! full-jitter backoff, but a request that is not idempotent is retried only
//! when the failure proves the service did not act on it.

use std::time::Duration;

use serde_json::Value;

use crate::api::{ErrorClass, ServiceError};
use crate::poll::full_jitter;

/// An HTTP answer from the SSM endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `x-amzn-errortype` header, if present.
    pub error_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// What a failed HTTP exchange tells about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFailure {
    /// The request never reached the service (DNS, refused connection, TLS).
    NotSent,
    /// The request may have reached the service (reset, timeout, cut answer).
    Ambiguous,
    /// The host's policy refused the request.
    Denied,
    /// The request cannot succeed as made (bad URL, body too large, host fault).
    Fatal,
}

/// A failed HTTP exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    /// What the failure says about the request.
    pub kind: NetFailure,
    /// What happened, for messages.
    pub detail: String,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Per-request detail.
    Debug,
    /// Lifecycle.
    Info,
    /// A mapped or swallowed error.
    Warn,
}

/// The outside world as the protocol logic sees it.
pub trait Host {
    /// Send one SSM request with `X-Amz-Target: action` and wait for the answer.
    fn post(&self, action: &str, body: &[u8]) -> Result<Reply, NetError>;
    /// Monotonic time since some fixed point.
    fn now(&self) -> Duration;
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn wall_ms(&self) -> i64;
    /// Block for `d`.
    fn sleep(&self, d: Duration);
    /// A random number for jitter.
    fn random(&self) -> u64;
    /// A random token for naming commands and temporary directories.
    fn token(&self) -> String;
    /// Record a log line.
    fn log(&self, level: Level, message: &str);
    /// Report progress of a long operation.
    fn progress(&self, operation: &str, done: u64, total: u64);
}

/// Why an SSM call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The service answered with an error that is not retried, or retries ran out.
    Service(ServiceError),
    /// The policy or the service refused the credentials or the action.
    Denied(String),
    /// A non-idempotent request failed in a way that leaves open whether
    /// the service acted on it.
    Ambiguous(String),
    /// The network failed and retries ran out.
    Net(String),
    /// The deadline passed before the call succeeded.
    Deadline(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Service(e) => write!(f, "{e}"),
            CallError::Denied(m) | CallError::Ambiguous(m) | CallError::Net(m) => f.write_str(m),
            CallError::Deadline(m) => write!(f, "gave up at the deadline: {m}"),
        }
    }
}

/// How a [`Client`] retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Ceiling of the first retry's pause; it doubles per retry.
    pub base: Duration,
    /// Largest pause.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(8),
        }
    }
}

/// Whether repeating a request is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, cancels and commands that are safe to run twice.
    Safe,
    /// A command that must not run twice.
    Once,
}

/// An SSM client: JSON in, JSON out, with retries.
pub struct Client<H> {
    /// The outside world.
    pub host: H,
    /// Retry rules.
    pub policy: RetryPolicy,
}

/// What to do after one failed attempt.
enum Next {
    Retry(String),
    Fail(CallError),
}

impl<H: Host> Client<H> {
    /// A client with the default retry policy.
    pub fn new(host: H) -> Client<H> {
        Client {
            host,
            policy: RetryPolicy::default(),
        }
    }

    /// Call `action` with `body`; retries stop at `deadline` (monotonic).
    pub fn call(
        &self,
        action: &str,
        body: &Value,
        idempotency: Idempotency,
        deadline: Option<Duration>,
    ) -> Result<Value, CallError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let short = action.trim_start_matches("AmazonSSM.");
        let mut attempt = 0;
        loop {
            let next = match self.host.post(action, &bytes) {
                Ok(reply) if reply.status == 200 => return parse_body(short, &reply.body),
                Ok(reply) => {
                    let err =
                        ServiceError::parse(reply.status, reply.error_type.as_deref(), &reply.body);
                    judge_service(err, idempotency)
                }
                Err(err) => judge_net(err, idempotency),
            };
            let reason = match next {
                Next::Fail(e) => return Err(e),
                Next::Retry(reason) => reason,
            };
            attempt += 1;
            if attempt >= self.policy.max_attempts {
                self.host.log(
                    Level::Warn,
                    &format!("{short} failed {attempt} times, giving up: {reason}"),
                );
                return Err(CallError::Net(format!(
                    "{short} failed {attempt} times; last: {reason}"
                )));
            }
            let pause = full_jitter(
                self.policy.base,
                self.policy.cap,
                attempt - 1,
                self.host.random(),
            );
            if let Some(deadline) = deadline
                && self.host.now() + pause >= deadline
            {
                return Err(CallError::Deadline(format!("{short}: {reason}")));
            }
            self.host.log(
                Level::Debug,
                &format!("{short} attempt {attempt} failed ({reason}); retrying in {pause:?}"),
            );
            self.host.sleep(pause);
        }
    }
}

fn parse_body(action: &str, body: &[u8]) -> Result<Value, CallError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| {
        CallError::Service(ServiceError {
            status: 200,
            code: String::new(),
            message: format!("{action} answered with a body that is not JSON: {e}"),
        })
    })
}

fn judge_service(err: ServiceError, idempotency: Idempotency) -> Next {
    match (err.class(), idempotency) {
        (ErrorClass::Throttled, _) | (ErrorClass::Transient, Idempotency::Safe) => {
            Next::Retry(err.to_string())
        }
        (ErrorClass::Transient, Idempotency::Once) => Next::Fail(CallError::Ambiguous(format!(
            "the service failed after receiving the request: {err}"
        ))),
        (ErrorClass::Denied, _) => Next::Fail(CallError::Denied(err.to_string())),
        (ErrorClass::Client, _) => Next::Fail(CallError::Service(err)),
    }
}

fn judge_net(err: NetError, idempotency: Idempotency) -> Next {
    match (err.kind, idempotency) {
        (NetFailure::NotSent, _) | (NetFailure::Ambiguous, Idempotency::Safe) => {
            Next::Retry(err.detail)
        }
        (NetFailure::Ambiguous, Idempotency::Once) => Next::Fail(CallError::Ambiguous(format!(
            "the connection failed after the request was sent: {}",
            err.detail
        ))),
        (NetFailure::Denied, _) => Next::Fail(CallError::Denied(format!(
            "the host's policy refused the request: {}",
            err.detail
        ))),
        (NetFailure::Fatal, _) => Next::Fail(CallError::Net(err.detail)),
    }
}
