//! The console as a stream of bytes with a look-ahead buffer: write, wait
//! for a marker, take what came before it.
//!
//! Every wait has a deadline, so a console that goes quiet or a marker that
//! never comes ends in a timeout the shell layer can recover from, never in a
//! hang. Where the remote terminal still turns `\n` into `\r\n`, the buffer
//! undoes it as bytes arrive.

use std::time::{Duration, Instant};

use crate::Error;
use crate::link::Link;

/// Most bytes the console buffers while waiting for one marker: a
/// command's output is held whole, twice at the peak, inside a session's
/// memory (64 MiB under the host's pooling allocator).
pub const MAX_BUFFERED: usize = 24 << 20;

/// Longest single read wait, so deadlines are checked often.
const READ_SLICE: Duration = Duration::from_millis(250);

/// The console and what it has sent that nobody has taken yet.
pub struct Console<L> {
    /// The link underneath.
    pub link: L,
    buf: Vec<u8>,
    /// How far `buf` has been searched for the current needle.
    scanned: usize,
    crlf: bool,
    pending_cr: bool,
}

impl<L: Link> Console<L> {
    /// A console over `link`, translating nothing.
    pub fn new(link: L) -> Console<L> {
        Console {
            link,
            buf: Vec::new(),
            scanned: 0,
            crlf: false,
            pending_cr: false,
        }
    }

    /// Turn `\r\n` back into `\n` in what arrives from now on.
    pub fn set_crlf(&mut self, on: bool) {
        self.crlf = on;
    }

    /// Whether `\r\n` is being translated.
    pub fn crlf(&self) -> bool {
        self.crlf
    }

    /// Write bytes to the console.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.link.write(data)
    }

    /// What has arrived and not been taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drop everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.pending_cr = false;
    }

    /// Read what arrives within `wait`; the number of bytes added.
    pub fn pump(&mut self, wait: Duration) -> Result<usize, Error> {
        let data = self.link.read(64 << 10, wait)?;
        let before = self.buf.len();
        if self.crlf {
            for &b in &data {
                if std::mem::take(&mut self.pending_cr) && b != b'\n' {
                    self.buf.push(b'\r');
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    self.buf.push(b);
                }
            }
        } else {
            self.buf.extend_from_slice(&data);
        }
        if self.buf.len() > MAX_BUFFERED {
            return Err(Error::Protocol(format!(
                "the console sent more than {} MiB without the end of the output",
                MAX_BUFFERED >> 20
            )));
        }
        Ok(self.buf.len() - before)
    }

    /// Wait until `needle` arrives, then return what came before it and drop
    /// both from the buffer. `what` names the wait in a timeout.
    pub fn take_until(
        &mut self,
        needle: &[u8],
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        self.scanned = 0;
        loop {
            if let Some(at) = self.find(needle) {
                let rest = self.buf.split_off(at + needle.len());
                let mut before = std::mem::replace(&mut self.buf, rest);
                before.truncate(at);
                self.scanned = 0;
                return Ok(before);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "no {what} from the console in time"
                )));
            }
            self.pump((deadline - now).min(READ_SLICE))?;
        }
    }

    /// Wait until the console has been quiet for `quiet` or `deadline`
    /// passes; whether anything arrived.
    pub fn settle(&mut self, quiet: Duration, deadline: Instant) -> Result<bool, Error> {
        let mut any = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(any);
            }
            if self.pump(quiet.min(deadline - now))? == 0 {
                return Ok(any);
            }
            any = true;
        }
    }

    fn find(&mut self, needle: &[u8]) -> Option<usize> {
        let start = self.scanned.saturating_sub(needle.len());
        let found = self.buf[start..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + start);
        self.scanned = self.buf.len();
        found
    }
}

/// The last line of `bytes` as text, with terminal escape sequences and
/// carriage returns removed, for matching prompts.
pub fn last_line(bytes: &[u8]) -> String {
    let text = visible(bytes);
    let trimmed = text.trim_end_matches(['\n']);
    let line = match trimmed.rfind('\n') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    };
    line.to_string()
}

/// `bytes` as text without terminal escape sequences, carriage returns or
/// other control characters but newlines and tabs.
pub fn visible(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST.
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}
