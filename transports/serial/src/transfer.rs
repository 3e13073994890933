//! Files over the console: upload and download in checksummed chunks.
//!
//! A chunk travels as base64 in lines of at most 1 KiB, each starting with
//! `#`, read on the target by `head -n` from the tty in canonical mode. The
//! `#` makes every line a shell comment, so lines left over after an
//! interrupted chunk do nothing when the shell reads them. Chunks are
//! compressed when that makes them smaller, and the target checks each one
//! against its SHA-256 before appending it; a chunk that arrives corrupted
//! or not at all is sent again. The whole file is checked once more, then
//! moved into place with a rename, so a reader never sees half a file.

use std::io::{Read as _, Write as _};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::link::{Level, Link};
use crate::shell::Shell;

/// Base64 characters per line of a chunk.
const LINE: usize = 1024;

/// Attempts per chunk before the transfer fails.
const ATTEMPTS: usize = 3;

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `data` as gzip, if that is at least 5% smaller.
pub fn maybe_compress(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    encoder.write_all(data).ok()?;
    let packed = encoder.finish().ok()?;
    (packed.len() * 20 < data.len() * 19).then_some(packed)
}

/// The lines a chunk travels in: `#`, base64, newline.
pub fn chunk_lines(payload: &[u8]) -> (Vec<u8>, usize) {
    let text = B64.encode(payload);
    let mut out = Vec::with_capacity(text.len() + text.len() / LINE * 2 + 2);
    let mut lines = 0;
    for piece in text.as_bytes().chunks(LINE) {
        out.push(b'#');
        out.extend_from_slice(piece);
        out.push(b'\n');
        lines += 1;
    }
    (out, lines)
}

/// Shell text that sets `var` to the path `value` exactly, trailing
/// newlines too. A relative path starting with `-` gets `./` in front, so
/// no tool takes it for an option.
fn assign(var: &str, value: &str) -> String {
    let value = if value.starts_with('-') {
        format!("./{value}")
    } else {
        value.to_string()
    };
    format!(
        "{var}=$(printf %s {} | base64 -d; printf .); {var}=${{{var}%.}}",
        B64.encode(value)
    )
}

/// Decode a downloaded chunk: base64 lines, then gzip when `packed`.
pub fn decode_chunk(text: &[u8], packed: bool) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = B64.decode(clean).ok()?;
    if !packed {
        return Some(bytes);
    }
    let mut out = Vec::new();
    GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

impl<L: Link> Shell<L> {
    /// Move chunk `index` of `path` with `step` until it arrives intact
    /// (`Some`), at most [`ATTEMPTS`] times. A step that times out is
    /// interrupted and the console resynchronised before the next attempt.
    fn attempts<T>(
        &mut self,
        path: &str,
        index: usize,
        again: &str,
        mut step: impl FnMut(&mut Self) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        for attempt in 1..=ATTEMPTS {
            match step(self) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(Error::Timeout(_)) => self.recover()?,
                Err(e) => return Err(self.fail(e)),
            }
            if attempt < ATTEMPTS {
                self.con.link.log(
                    Level::Warn,
                    &format!("chunk {} of {path} arrived corrupted; {again}", index + 1),
                );
            }
        }
        Err(Error::Protocol(format!(
            "chunk {} of {path} arrived corrupted {ATTEMPTS} times",
            index + 1
        )))
    }

    fn need_tools(&self, what: &str, tools: &[(&str, bool)]) -> Result<(), Error> {
        let missing: Vec<&str> = tools
            .iter()
            .filter(|(_, has)| !has)
            .map(|(n, _)| *n)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "{what} needs {} on the target, which this console lacks",
                missing.join(", ")
            )))
        }
    }

    /// Write `data` to `path` on the target, atomically.
    pub fn upload(&mut self, path: &str, data: &[u8], mode: Option<u32>) -> Result<(), Error> {
        if path.is_empty() {
            return Err(Error::InvalidTarget("the remote path is empty".into()));
        }
        let deadline = Instant::now() + self.config.line_time(data.len() * 2) * 2;
        let nonce = self.con.link.nonce();
        let set = format!(
            "{}; RBXT=\"$RBXF.railbox-{nonce}\"; ( if [ -d \"$RBXF\" ]; then echo 'is a directory'; \
             exit 1; fi; : > \"$RBXT\" ) 2>&1",
            assign("RBXF", path)
        );
        self.send_file(&set, path, data, mode, deadline)
    }

    /// Write a file in the session's private directory.
    pub(crate) fn put_private(
        &mut self,
        name: &str,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), Error> {
        let set = format!("RBXF=\"$RBXD/{name}\"; RBXT=\"$RBXF.part\"; ( : > \"$RBXT\" ) 2>&1");
        self.send_file(&set, name, data, None, deadline)
    }

    fn send_file(
        &mut self,
        set: &str,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
        deadline: Instant,
    ) -> Result<(), Error> {
        self.need_tools(
            "uploading",
            &[
                ("base64", self.tools.base64),
                ("head", self.tools.head),
                ("sha256sum", self.tools.sha256sum),
                ("tr", self.tools.tr),
            ],
        )?;
        let opened = self.exec_raw(set, deadline)?;
        if opened.status != 0 {
            return Err(file_error(path, "cannot write", &opened.out));
        }
        let result = self.send_chunks(path, data, mode, deadline);
        if result.is_err() {
            let _ = self.exec_raw("rm -f \"$RBXT\" \"$RBXT.c\"", deadline);
        }
        result
    }

    fn send_chunks(
        &mut self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
        deadline: Instant,
    ) -> Result<(), Error> {
        let total = data.len() as u64;
        let operation = format!("upload {path}");
        let mut done = 0u64;
        self.con.link.progress(&operation, 0, total);
        for (index, chunk) in data.chunks(self.config.chunk_size).enumerate() {
            let packed = if self.tools.gunzip {
                maybe_compress(chunk)
            } else {
                None
            };
            let (lines, count) = chunk_lines(packed.as_deref().unwrap_or(chunk));
            let body = format!(
                "head -n {count} | tr -d '#' | base64 -d{} > \"$RBXT.c\"; set -- $(sha256sum < \"$RBXT.c\"); \
                 [ \"$1\" = {} ] && cat < \"$RBXT.c\" >> \"$RBXT\"",
                if packed.is_some() { " | gunzip" } else { "" },
                sha256_hex(chunk)
            );
            let wait = self.config.line_time(lines.len());
            self.attempts(path, index, "sending it again", |shell| {
                let chunk_deadline = (Instant::now() + wait).min(deadline);
                let raw = shell.exec_raw_with(&body, &lines, chunk_deadline)?;
                Ok((raw.status == 0).then_some(()))
            })?;
            done += chunk.len() as u64;
            self.con.link.progress(&operation, done, total);
        }
        let chmod = match mode {
            Some(mode) => format!("chmod {:o} \"$RBXT\" && ", mode & 0o7777),
            None => String::new(),
        };
        let finish = format!(
            "rm -f \"$RBXT.c\"; set -- $(sha256sum < \"$RBXT\"); if [ \"$1\" = {} ]; then \
             {{ {chmod}mv -f \"$RBXT\" \"$RBXF\"; }} 2>&1; else (exit 99); fi",
            sha256_hex(data)
        );
        let finished = self.exec_raw(&finish, deadline)?;
        match finished.status {
            0 => Ok(()),
            99 => Err(Error::Protocol(format!(
                "{path} does not match its checksum after the upload"
            ))),
            _ => Err(file_error(path, "cannot write", &finished.out)),
        }
    }

    /// Read the file at `path` on the target.
    pub fn download(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        self.need_tools(
            "downloading",
            &[
                ("base64", self.tools.base64),
                ("dd", self.tools.dd),
                ("sha256sum", self.tools.sha256sum),
            ],
        )?;
        let deadline = Instant::now() + self.config.line_time(1 << 20);
        let head = format!(
            "{}; if [ -f \"$RBXF\" ] && [ -r \"$RBXF\" ]; then wc -c < \"$RBXF\"; \
             set -- $(sha256sum < \"$RBXF\"); echo \"$1\"; elif [ -d \"$RBXF\" ]; then (exit 2); \
             elif [ -e \"$RBXF\" ]; then (exit 3); else (exit 1); fi",
            assign("RBXF", path)
        );
        let info = self.exec_raw(&head, deadline)?;
        let text = String::from_utf8_lossy(&info.out).into_owned();
        let mut fields = text.split_whitespace();
        let (size, whole) = match (info.status, fields.next(), fields.next()) {
            (0, Some(size), Some(hash)) => (
                size.parse::<u64>().map_err(|_| {
                    Error::Protocol(format!("the console gave {size:?} as the size of {path}"))
                })?,
                hash.to_string(),
            ),
            (1, ..) => return Err(Error::NotFound(format!("{path} does not exist"))),
            (2, ..) => return Err(Error::InvalidTarget(format!("{path} is a directory"))),
            (3, ..) => {
                return Err(Error::Denied(format!(
                    "{path} is not a readable regular file"
                )));
            }
            _ => {
                return Err(Error::Protocol(format!(
                    "cannot read {path}: {}",
                    text.trim()
                )));
            }
        };
        let chunk = self.config.chunk_size as u64;
        let count = size.div_ceil(chunk);
        let operation = format!("download {path}");
        let packed = self.tools.gzip;
        let mut data = Vec::with_capacity(size as usize);
        self.con.link.progress(&operation, 0, size);
        for index in 0..count {
            let read = format!("dd if=\"$RBXF\" bs={chunk} skip={index} count=1 2>/dev/null");
            let body = format!(
                "{read}{} | base64; set -- $({read} | sha256sum); echo \"$1\"",
                if packed { " | gzip -c" } else { "" }
            );
            let wait = self.config.line_time(chunk as usize * 8 / 3);
            let piece = self.attempts(path, index as usize, "reading it again", |shell| {
                let raw = shell.exec_raw(&body, Instant::now() + wait)?;
                Ok(if raw.status == 0 {
                    split_chunk(&raw.out, packed)
                } else {
                    None
                })
            })?;
            data.extend_from_slice(&piece);
            self.con.link.progress(&operation, data.len() as u64, size);
        }
        if data.len() as u64 != size || sha256_hex(&data) != whole {
            return Err(Error::Protocol(format!(
                "{path} changed while it was read, or arrived damaged: it does not match its checksum"
            )));
        }
        Ok(data)
    }
}

/// A downloaded chunk's bytes, if its last line is the SHA-256 of the rest.
fn split_chunk(out: &[u8], packed: bool) -> Option<Vec<u8>> {
    let text = out.strip_suffix(b"\n").unwrap_or(out);
    let cut = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let hash = std::str::from_utf8(&text[cut..]).ok()?.trim();
    let piece = decode_chunk(&text[..cut], packed)?;
    (sha256_hex(&piece) == hash).then_some(piece)
}

/// An error for a file the target's shell refused, kind taken from its
/// message.
fn file_error(path: &str, doing: &str, out: &[u8]) -> Error {
    let message = String::from_utf8_lossy(out).trim().to_string();
    let lower = message.to_ascii_lowercase();
    if lower.contains("is a directory") {
        Error::InvalidTarget(format!("{doing} {path}: it is a directory"))
    } else if lower.contains("no such file") || lower.contains("nonexistent directory") {
        Error::NotFound(format!("{doing} {path}: its directory does not exist"))
    } else if lower.contains("permission denied") || lower.contains("read-only") {
        Error::Denied(format!("{doing} {path}: {message}"))
    } else {
        Error::Io(format!("{doing} {path}: {message}"))
    }
}
