//! The transport's error type, one variant per case of the WIT `error`.
//!
//! Protocol code returns these; `lib` turns them into the WIT variant at the
//! export boundary, so everything below it is testable without bindings.

use std::fmt;

/// An expected failure, reported to the user with a message naming the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The target URL or one of its options cannot be used.
    InvalidTarget(String),
    /// The instance, or a file on it, does not exist.
    NotFound(String),
    /// The policy or the service refused the operation.
    Denied(String),
    /// The operation did not finish in time.
    Timeout(String),
    /// The transport cannot do this on this target.
    Unsupported(String),
    /// The service or the instance answered unexpectedly.
    Protocol(String),
    /// A network or instance-side input/output failure.
    Io(String),
}

impl Error {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidTarget(m)
            | Error::NotFound(m)
            | Error::Denied(m)
            | Error::Timeout(m)
            | Error::Unsupported(m)
            | Error::Protocol(m)
            | Error::Io(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
