//! The console link: the host's byte stream, plus the logging and
//! randomness the protocol needs, behind a trait so that everything above it
//! is tested natively against a scripted console.

use std::time::Duration;

use crate::Error;
use crate::bindings::railbox::transport::{byte_stream, logging};

pub use logging::Level;

/// What the protocol needs from the outside world.
pub trait Link {
    /// Read up to `max` bytes, waiting at most `wait` for the first; empty
    /// when nothing arrived in time.
    fn read(&self, max: u32, wait: Duration) -> Result<Vec<u8>, Error>;
    /// Write all of `data`.
    fn write(&self, data: &[u8]) -> Result<(), Error>;
    /// Have the host write the named secret option.
    fn write_secret(&self, name: &str) -> Result<(), Error>;
    /// Record a message.
    fn log(&self, level: Level, message: &str);
    /// Report progress of a transfer.
    fn progress(&self, operation: &str, done: u64, total: u64);
    /// A fresh random token for markers, 16 lowercase hex digits.
    fn nonce(&self) -> String;
}

/// The real link: the byte stream the host opened.
pub struct Wire {
    conn: byte_stream::Connection,
}

impl Wire {
    /// Wrap an open connection.
    pub fn new(conn: byte_stream::Connection) -> Wire {
        Wire { conn }
    }
}

impl Link for Wire {
    fn read(&self, max: u32, wait: Duration) -> Result<Vec<u8>, Error> {
        let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        self.conn.read(max, ms)
    }

    fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.conn.write(data)
    }

    fn write_secret(&self, name: &str) -> Result<(), Error> {
        self.conn.write_secret(name)
    }

    fn log(&self, level: Level, message: &str) {
        logging::log(level, message);
    }

    fn progress(&self, operation: &str, done: u64, total: u64) {
        logging::progress(operation, done, total);
    }

    fn nonce(&self) -> String {
        format!("{:016x}", wasip2::random::random::get_random_u64())
    }
}
