//! Lossless command output through GetCommandInvocation: the shell wrapper,
//! its frame, and reading large output back in chunks.
//!
//! GetCommandInvocation returns at most 24,000 characters of stdout and 8,000
//! of stderr, and the service turns invalid UTF-8 into U+FFFD. So every
//! command on a Unix instance runs inside a wrapper that keeps its output in a
//! private directory and answers in base64, which survives both limits.
//!
//! # The wrapper
//!
//! `d=${TMPDIR:-/tmp}/railbox.<token>` is created with mode 700 (the token is
//! 128 random bits, fresh per command). The user's command runs as
//! `sh -c '<command>' >$d/o 2>$d/e </dev/null`, exactly as the agent would run
//! it, with our variables and functions out of its sight. Then the wrapper
//! prints one header line on stdout:
//!
//! ```text
//! RBX1 <token> run <exit> <stdout bytes> <stdout sha256> <stderr bytes> <stderr sha256> <io><ie>
//! ```
//!
//! `<io>` is 1 when stdout is at most [`OUT_INLINE`] bytes, in which case its
//! base64 follows the header on stdout; `<ie>` is 1 when stderr is at most
//! [`ERR_INLINE`] bytes, in which case its base64 is the wrapper's stderr.
//! Both limits leave room for any base64 line wrapping and the header. When
//! both are inline the wrapper empties `$d` itself, so the common case costs
//! one SendCommand and the polls that find it finished. The wrapper exits
//! with the command's status, so `ResponseCode` and the console agree with it.
//! A sha256 of `-` means the instance has no sha256 tool; sizes still check.
//! Other header words: `nodir` (the directory could not be made), `notools`
//! (neither `base64` nor `openssl`) and `dup`; in all three the command did
//! not run.
//!
//! # At most once
//!
//! `mkdir $d` is also a lock: a second copy of the same command (SendCommand
//! sent again after an ambiguous failure) finds `$d` and answers `dup`
//! without running anything, and the session then follows the first copy. So
//! `$d` outlives the output it held: the empty directory is removed by the
//! session's next wrapper (`rmdir`, which spares anything non-empty) or when
//! the session closes.
//!
//! # Reading back
//!
//! Output that is not inline stays in `$d`. It is read with further commands,
//! each printing one range of a file as base64 on stdout (up to
//! [`OUT_CHUNK`] bytes) and another on stderr (up to [`ERR_CHUNK`] bytes),
//! cut with `dd` in [`BLOCK`]-byte blocks. Reads are idempotent, so they are
//! sent several at a time and retried freely; the reassembled files are
//! checked against the header's sizes and sha256, then one last command
//! removes `$d`. One MiB of stdout takes 46 reads.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Largest stdout the wrapper prints inline, in bytes.
pub const OUT_INLINE: u64 = 17_400;
/// Largest stderr the wrapper prints inline, in bytes.
pub const ERR_INLINE: u64 = 5_700;
/// Bytes read back per command on stdout.
pub const OUT_CHUNK: u64 = 17_400;
/// Bytes read back per command on stderr.
pub const ERR_CHUNK: u64 = 5_700;
/// `dd` block size; every chunk above is a multiple of it.
pub const BLOCK: u64 = 300;
/// Characters of stdout GetCommandInvocation returns at most.
pub const OUT_CAP: usize = 24_000;
/// Characters of stderr GetCommandInvocation returns at most.
pub const ERR_CAP: usize = 8_000;
/// What the agent appends to output it cut.
pub const TRUNCATED_MARK: &str = "--output truncated--";

/// Shell functions shared by every script: base64 in and out, size, sha256.
const FUNCTIONS: &str = r#"rb_b64(){ if command -v base64 >/dev/null 2>&1; then base64; else openssl base64; fi; }
rb_b64d(){ if command -v base64 >/dev/null 2>&1; then base64 -d; else openssl base64 -d -A; fi; }
rb_size(){ wc -c <"$1" | tr -d ' \t'; }
rb_sha(){ if command -v sha256sum >/dev/null 2>&1; then sha256sum <"$1"; elif command -v shasum >/dev/null 2>&1; then shasum -a 256 <"$1"; elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r <"$1"; fi | cut -c1-64; }
rb_tools(){ command -v base64 >/dev/null 2>&1 || command -v openssl >/dev/null 2>&1; }
"#;

/// `s` as one single-quoted shell word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The private directory (or lock) named by a token, as a shell word.
pub fn dir_of(name: &str) -> String {
    format!("\"${{TMPDIR:-/tmp}}/railbox.{name}\"")
}

/// The opening of every script: the directory variable and the functions.
pub fn prelude(token: &str) -> String {
    format!("d={}\n{FUNCTIONS}", dir_of(token))
}

/// The script that runs `command` under the wrapper described above.
pub fn wrap(command: &str, token: &str, stale_locks: &[String]) -> String {
    let stale = match stale_locks {
        [] => String::new(),
        names => {
            let dirs: Vec<String> = names.iter().map(|n| dir_of(n)).collect();
            format!("rmdir {} 2>/dev/null\n", dirs.join(" "))
        }
    };
    format!(
        r#"{prelude}{stale}rb_tools || {{ echo "RBX1 {token} notools"; exit 1; }}
mkdir -m 700 "$d" 2>/dev/null || {{ if [ -e "$d" ]; then w=dup; else w=nodir; fi; echo "RBX1 {token} $w"; exit 1; }}
sh -c {command} >"$d/o" 2>"$d/e" </dev/null
r=$?
so=$(rb_size "$d/o"); se=$(rb_size "$d/e"); ho=$(rb_sha "$d/o"); he=$(rb_sha "$d/e")
io=0; [ "$so" -le {OUT_INLINE} ] && io=1
ie=0; [ "$se" -le {ERR_INLINE} ] && ie=1
echo "RBX1 {token} run $r $so ${{ho:--}} $se ${{he:--}} $io$ie"
[ $io = 1 ] && rb_b64 <"$d/o"
[ $ie = 1 ] && rb_b64 <"$d/e" >&2
[ $io$ie = 11 ] && rm -f "$d/o" "$d/e"
exit $r
"#,
        prelude = prelude(token),
        command = quote(command),
    )
}

/// The script that removes the private directories (or locks) named `names`.
pub fn cleanup(names: &[String]) -> String {
    let dirs: Vec<String> = names.iter().map(|t| dir_of(t)).collect();
    format!("rm -rf {}\n", dirs.join(" "))
}

/// The status line a script printed: the words after `RBX1 <token>`, and
/// the text after the line.
pub fn status_line<'a>(stdout: &'a str, token: &str) -> Option<(Vec<&'a str>, &'a str)> {
    let (line, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let mut words = line.split_ascii_whitespace();
    if words.next()? != "RBX1" || words.next()? != token {
        return None;
    }
    Some((words.collect(), rest))
}

/// One output stream as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256, or `None` if the instance could not compute it.
    pub sha256: Option<String>,
    /// Whether its base64 came along.
    pub inline: bool,
}

/// The header of a wrapped command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// The command ran.
    Run {
        /// Its exit status.
        exit: i32,
        /// Its stdout.
        out: Stream,
        /// Its stderr.
        err: Stream,
    },
    /// The private directory could not be made; the command did not run.
    NoDir,
    /// The instance has neither base64 nor openssl; the command did not run.
    NoTools,
    /// Another copy of this command holds its directory: this copy did not run.
    Dup,
}

/// Parse the header words after the token.
pub fn parse_header(words: &[&str]) -> Option<Header> {
    match words {
        ["nodir"] => Some(Header::NoDir),
        ["notools"] => Some(Header::NoTools),
        ["dup"] => Some(Header::Dup),
        ["run", exit, so, ho, se, he, flags] => {
            let flags = flags.as_bytes();
            if flags.len() != 2 {
                return None;
            }
            let stream = |size: &str, sha: &str, flag: u8| -> Option<Stream> {
                Some(Stream {
                    size: size.parse().ok()?,
                    sha256: parse_sha(sha)?,
                    inline: flag == b'1',
                })
            };
            Some(Header::Run {
                exit: exit.parse().ok()?,
                out: stream(so, ho, flags[0])?,
                err: stream(se, he, flags[1])?,
            })
        }
        _ => None,
    }
}

/// A sha256 word: 64 hex digits, or `-` for none. `None` if malformed.
pub fn parse_sha(word: &str) -> Option<Option<String>> {
    if word == "-" {
        return Some(None);
    }
    let ok = word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| Some(word.to_ascii_lowercase()))
}

/// Lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decode base64 text as the instance printed it, line breaks and all.
///
/// The base64 ends at the first line that is not base64: when a script exits
/// non-zero the agent adds its own line to stderr (`failed to run commands:
/// exit status 1`). The caller's size and sha256 check what was decoded.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let is_base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let compact: Vec<u8> = text
        .lines()
        .map(str::trim)
        .take_while(|line| line.bytes().all(is_base64))
        .flat_map(str::bytes)
        .collect();
    STANDARD
        .decode(&compact)
        .map_err(|e| format!("bad base64 from the instance: {e}"))
}

/// Encode bytes as base64 without line breaks.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Check bytes against a stream's size and sha256.
pub fn verify(what: &str, data: &[u8], size: u64, sha256: Option<&str>) -> Result<(), String> {
    if data.len() as u64 != size {
        return Err(format!(
            "{what}: got {} bytes, the instance reported {size}",
            data.len()
        ));
    }
    match sha256 {
        Some(want) if sha256_hex(data) != want => {
            Err(format!("{what}: sha256 differs from the instance's"))
        }
        _ => Ok(()),
    }
}

/// Whether text from GetCommandInvocation may have been cut.
pub fn looks_truncated(text: &str, cap: usize) -> bool {
    text.ends_with(TRUNCATED_MARK) || text.chars().count() >= cap
}

/// A byte range of a file in the private directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File name inside the directory: `o`, `e` or `f`.
    pub file: &'static str,
    /// First byte, a multiple of [`BLOCK`].
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// One read-back command: a range for its stdout and one for its stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadStep {
    /// Printed as base64 on stdout.
    pub out: Option<Segment>,
    /// Printed as base64 on stderr.
    pub err: Option<Segment>,
}

/// The read-back commands that fetch whole `files` (name, size).
pub fn plan_reads(files: &[(&'static str, u64)]) -> Vec<ReadStep> {
    let mut cursor = files
        .iter()
        .map(|&(f, size)| (f, 0u64, size))
        .collect::<Vec<_>>();
    let mut take = |max: u64| -> Option<Segment> {
        let slot = cursor.iter_mut().find(|(_, off, size)| off < size)?;
        let len = max.min(slot.2 - slot.1);
        let seg = Segment {
            file: slot.0,
            offset: slot.1,
            len,
        };
        slot.1 += len;
        Some(seg)
    };
    let mut steps = Vec::new();
    loop {
        let step = ReadStep {
            out: take(OUT_CHUNK),
            err: take(ERR_CHUNK),
        };
        if step.out.is_none() {
            return steps;
        }
        steps.push(step);
    }
}

/// The script of one read-back command.
pub fn read_script(token: &str, step: &ReadStep) -> String {
    let dd = |s: &Segment| {
        format!(
            "dd if=\"$d/{}\" bs={BLOCK} skip={} count={} 2>/dev/null | rb_b64",
            s.file,
            s.offset / BLOCK,
            s.len.div_ceil(BLOCK)
        )
    };
    let mut script = format!(
        "{}[ -d \"$d\" ] || {{ echo \"RBX1 {token} gone\"; exit 1; }}\n",
        prelude(token)
    );
    if let Some(s) = &step.out {
        script += &dd(s);
        script.push('\n');
    }
    if let Some(s) = &step.err {
        script += &dd(s);
        script += " >&2\n";
    }
    script
}

/// Put one decoded range in its file's buffer, checking its length.
pub fn place(buffer: &mut [u8], segment: &Segment, data: &[u8]) -> Result<(), String> {
    if data.len() as u64 != segment.len {
        return Err(format!(
            "read back {} bytes of {} at {}, expected {}",
            data.len(),
            segment.file,
            segment.offset,
            segment.len
        ));
    }
    let start = segment.offset as usize;
    buffer[start..start + data.len()].copy_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest base64 text of `n` bytes with line breaks every 64 characters
    /// (`openssl base64`; coreutils and busybox wrap at 76), final newline included.
    pub fn b64_len_worst(n: u64) -> u64 {
        let chars = n.div_ceil(3) * 4;
        chars + chars.div_ceil(64) + 1
    }

    /// The longest header line the wrapper can print.
    fn longest_header() -> usize {
        let sha = "f".repeat(64);
        let t = "0".repeat(32);
        format!("RBX1 {t} run 255 18446744073709551615 {sha} 18446744073709551615 {sha} 11\n").len()
    }

    #[test]
    fn inline_output_and_chunks_fit_the_service_caps() {
        let header = longest_header() as u64;
        assert!(header + b64_len_worst(OUT_INLINE) + 100 <= OUT_CAP as u64);
        assert!(b64_len_worst(ERR_INLINE) + 100 <= ERR_CAP as u64);
        assert!(b64_len_worst(OUT_CHUNK) + 100 <= OUT_CAP as u64);
        assert!(b64_len_worst(ERR_CHUNK) + 100 <= ERR_CAP as u64);
        assert_eq!(OUT_CHUNK % BLOCK, 0);
        assert_eq!(ERR_CHUNK % BLOCK, 0);
    }

    #[test]
    fn quote_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn headers_parse() {
        let sha = "a".repeat(64);
        let line = format!("RBX1 tok run 3 10 {sha} 0 - 10\nQUJD\n");
        let (words, rest) = status_line(&line, "tok").unwrap();
        assert_eq!(rest, "QUJD\n");
        let header = parse_header(&words).unwrap();
        assert_eq!(
            header,
            Header::Run {
                exit: 3,
                out: Stream {
                    size: 10,
                    sha256: Some(sha),
                    inline: true
                },
                err: Stream {
                    size: 0,
                    sha256: None,
                    inline: false
                },
            }
        );
        assert!(status_line(&line, "other").is_none());
        assert_eq!(parse_header(&["nodir"]), Some(Header::NoDir));
        assert_eq!(parse_header(&["dup"]), Some(Header::Dup));
        assert_eq!(parse_header(&["run", "x"]), None);
    }

    #[test]
    fn decode_ignores_line_breaks() {
        assert_eq!(decode("QUJD\nREVG\n").unwrap(), b"ABCDEF");
        assert_eq!(decode("").unwrap(), b"");
        assert!(decode("QUJ").is_err());
        // Text that is not base64 ends it; the size and sha256 checks catch a
        // stream that lost its tail this way.
        assert_eq!(decode("Q!!D").unwrap(), b"");
        let agent = "QUJD\nREVG\nfailed to run commands: exit status 3\n";
        assert_eq!(decode(agent).unwrap(), b"ABCDEF");
        assert_eq!(
            decode("failed to run commands: exit status 1").unwrap(),
            b""
        );
    }

    #[test]
    fn verify_checks_size_and_digest() {
        let sha = sha256_hex(b"abc");
        assert!(verify("x", b"abc", 3, Some(&sha)).is_ok());
        assert!(verify("x", b"abc", 3, None).is_ok());
        assert!(verify("x", b"abd", 3, Some(&sha)).is_err());
        assert!(verify("x", b"ab", 3, None).is_err());
    }

    #[test]
    fn reads_cover_every_byte_once_in_aligned_ranges() {
        let files = [("o", 1_048_576), ("e", 12_345)];
        assert_eq!(plan_reads(&files[..1]).len(), 46, "as the module doc says");
        let steps = plan_reads(&files);
        assert_eq!(steps.len(), 47);
        let mut covered = [0u64; 2];
        for step in &steps {
            for seg in [step.out, step.err].into_iter().flatten() {
                assert_eq!(seg.offset % BLOCK, 0);
                let i = if seg.file == "o" { 0 } else { 1 };
                assert_eq!(seg.offset, covered[i], "ranges are in order and contiguous");
                covered[i] += seg.len;
            }
            assert!(step.out.unwrap().len <= OUT_CHUNK);
            assert!(step.err.is_none_or(|s| s.len <= ERR_CHUNK));
        }
        assert_eq!(covered, [1_048_576, 12_345]);
    }

    #[test]
    fn empty_files_need_no_reads() {
        assert!(plan_reads(&[("o", 0), ("e", 0)]).is_empty());
        assert_eq!(plan_reads(&[("f", 1)]).len(), 1);
    }

    #[test]
    fn read_scripts_cut_with_dd_blocks() {
        let step = ReadStep {
            out: Some(Segment {
                file: "o",
                offset: 17_400,
                len: 17_400,
            }),
            err: Some(Segment {
                file: "e",
                offset: 0,
                len: 301,
            }),
        };
        let script = read_script("tok", &step);
        assert!(script.contains("dd if=\"$d/o\" bs=300 skip=58 count=58 2>/dev/null | rb_b64\n"));
        assert!(script.contains("dd if=\"$d/e\" bs=300 skip=0 count=2 2>/dev/null | rb_b64 >&2"));
    }

    #[test]
    fn truncation_is_detected_by_mark_or_length() {
        assert!(looks_truncated("abc--output truncated--", OUT_CAP));
        assert!(looks_truncated(&"x".repeat(8_000), ERR_CAP));
        assert!(!looks_truncated("short", ERR_CAP));
    }
}
