//! Captured command output and the service's truncation of it.
//!
//! The agent handles output as bytes and truncates by bytes; the text only
//! becomes a string when it is put into JSON. Like the agent's JSON encoder,
//! the emulator replaces every byte that is not part of valid UTF-8 with one
//! U+FFFD, so binary output arrives as a string full of replacement characters
//! and a multi-byte character cut by truncation turns into one U+FFFD per byte.
//!
//! Three views come out of one capture:
//! - GetCommandInvocation's `StandardOutputContent`: at most 24,000 bytes; longer
//!   output keeps its first 23,980 bytes followed by `--output truncated--`.
//! - `StandardErrorContent`: the same agent truncation, then the service's cap of
//!   8,000 characters, applied as a plain cut. How the service cuts stderr is
//!   unverified; a cut without a marker is this emulator's choice.
//! - ListCommandInvocations' plugin `Output` (2,500 bytes): stdout, then an error
//!   banner and stderr, with per-stream truncation markers.

/// Bytes of each stream the agent keeps for the API.
pub(crate) const AGENT_STREAM_LIMIT: usize = 24_000;
/// Suffix the agent appends to a stream it truncated.
pub(crate) const AGENT_TRUNCATED_SUFFIX: &str = "--output truncated--";
/// Characters of stderr GetCommandInvocation returns.
pub(crate) const STDERR_CHAR_LIMIT: usize = 8_000;
/// Bytes of combined output in a ListCommandInvocations plugin `Output`.
pub(crate) const PLUGIN_OUTPUT_LIMIT: usize = 2_500;

const ERROR_BANNER: &str = "\n----------ERROR-------\n";
const OUTPUT_MARK: &str = "\n---Output truncated---";
const ERROR_MARK: &str = "\n---Error truncated----";

/// Stderr as the agent reports it for a script that exited with `code`
/// other than success: the agent adds a line of its own, `failed to run
/// commands: exit status N`, after what the script wrote.
pub(crate) fn with_failure_line(stderr: &Capture, code: i32) -> Capture {
    let mut reported = stderr.clone();
    if reported.head.last().is_some_and(|&b| b != b'\n') {
        reported.push(b"\n");
    }
    reported.push(format!("failed to run commands: exit status {code}\n").as_bytes());
    reported
}

/// The first bytes of one stream and how many bytes it produced in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Capture {
    head: Vec<u8>,
    total: usize,
}

impl Capture {
    /// A capture holding exactly `bytes`.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Capture {
        let mut capture = Capture::default();
        capture.push(bytes);
        capture
    }

    /// Appends bytes, keeping only what any view of the output can show.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = AGENT_STREAM_LIMIT.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.total = self.total.saturating_add(bytes.len());
    }

    /// Total bytes produced, including those not kept.
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    /// The kept bytes, cut to `n`.
    fn prefix(&self, n: usize) -> &[u8] {
        &self.head[..n.min(self.head.len())]
    }

    /// The stream as the agent reports it: whole, or cut with the agent's suffix.
    fn agent_view(&self) -> Vec<u8> {
        if self.total <= AGENT_STREAM_LIMIT {
            return self.head.clone();
        }
        let keep = AGENT_STREAM_LIMIT - AGENT_TRUNCATED_SUFFIX.len();
        let mut out = self.prefix(keep).to_vec();
        out.extend_from_slice(AGENT_TRUNCATED_SUFFIX.as_bytes());
        out
    }
}

/// `StandardOutputContent` for a finished invocation.
pub(crate) fn stdout_content(stdout: &Capture) -> String {
    lossy(&stdout.agent_view())
}

/// `StandardErrorContent` for a finished invocation.
pub(crate) fn stderr_content(stderr: &Capture) -> String {
    let text = lossy(&stderr.agent_view());
    match text.char_indices().nth(STDERR_CHAR_LIMIT) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

/// The plugin `Output` of ListCommandInvocations with `Details`.
///
/// The split follows the agent: if both streams fit they are joined whole;
/// if both are long each gets half the room; otherwise the long one is cut.
pub(crate) fn plugin_output(stdout: &Capture, stderr: &Capture, capacity: usize) -> String {
    let (out_len, err_len) = (stdout.len(), stderr.len());
    let banner = if err_len > 0 { ERROR_BANNER } else { "" };
    let room = capacity.saturating_sub(banner.len());
    let mut text: Vec<u8> = Vec::with_capacity(capacity);

    if out_len + err_len < room {
        text.extend_from_slice(stdout.prefix(out_len));
        text.extend_from_slice(banner.as_bytes());
        text.extend_from_slice(stderr.prefix(err_len));
    } else if out_len > room / 2 && err_len > room / 2 {
        let each = room.saturating_sub(OUTPUT_MARK.len() + ERROR_MARK.len()) / 2;
        text.extend_from_slice(stdout.prefix(each));
        text.extend_from_slice(OUTPUT_MARK.as_bytes());
        text.extend_from_slice(banner.as_bytes());
        text.extend_from_slice(stderr.prefix(each));
        text.extend_from_slice(ERROR_MARK.as_bytes());
    } else if out_len < room / 2 {
        let keep = room
            .saturating_sub(ERROR_MARK.len())
            .saturating_sub(out_len);
        text.extend_from_slice(stdout.prefix(out_len));
        text.extend_from_slice(banner.as_bytes());
        text.extend_from_slice(stderr.prefix(keep));
        text.extend_from_slice(ERROR_MARK.as_bytes());
    } else {
        let keep = room
            .saturating_sub(OUTPUT_MARK.len())
            .saturating_sub(err_len);
        text.extend_from_slice(stdout.prefix(keep));
        text.extend_from_slice(OUTPUT_MARK.as_bytes());
        text.extend_from_slice(banner.as_bytes());
        text.extend_from_slice(stderr.prefix(err_len));
    }
    lossy(&text)
}

/// Decodes bytes as UTF-8, replacing each byte of an invalid sequence with U+FFFD.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_stdout_is_cut_with_the_agent_suffix() {
        let capture = Capture::from_bytes(&vec![b'a'; 30_000]);
        let text = stdout_content(&capture);
        assert_eq!(text.len(), 24_000);
        assert!(text.ends_with("a--output truncated--"));
        assert_eq!(
            stdout_content(&Capture::from_bytes(&[b'a'; 24_000])).len(),
            24_000
        );
    }

    #[test]
    fn stderr_is_capped_at_eight_thousand_characters() {
        let capture = Capture::from_bytes("é".repeat(9_000).as_bytes());
        let text = stderr_content(&capture);
        assert_eq!(text.chars().count(), 8_000);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each() {
        assert_eq!(lossy(b"a\xff\xfeb"), "a\u{fffd}\u{fffd}b");
        // A three-byte character cut after two bytes.
        assert_eq!(lossy(b"\xe2\x82"), "\u{fffd}\u{fffd}");
        assert_eq!(lossy("€".as_bytes()), "€");
    }

    #[test]
    fn plugin_output_joins_short_streams_with_the_banner() {
        let out = Capture::from_bytes(b"sample output");
        let err = Capture::from_bytes(b"sample error");
        assert_eq!(
            plugin_output(&out, &Capture::default(), 2_500),
            "sample output"
        );
        assert_eq!(
            plugin_output(&out, &err, 2_500),
            "sample output\n----------ERROR-------\nsample error"
        );
        assert_eq!(
            plugin_output(&Capture::default(), &err, 2_500),
            "\n----------ERROR-------\nsample error"
        );
    }

    #[test]
    fn plugin_output_cuts_long_streams_to_the_capacity() {
        let long = Capture::from_bytes(&[b'x'; 5_000]);
        let only_out = plugin_output(&long, &Capture::default(), 2_500);
        assert_eq!(only_out.len(), 2_500);
        assert!(only_out.ends_with("x\n---Output truncated---"));

        let both = plugin_output(&long, &long, 2_500);
        assert!(both.len() <= 2_500);
        assert!(both.contains("x\n---Output truncated---\n----------ERROR-------\nx"));
        assert!(both.ends_with("x\n---Error truncated----"));

        let short_out = plugin_output(&Capture::from_bytes(b"ok"), &long, 2_500);
        assert!(short_out.starts_with("ok\n----------ERROR-------\nxx"));
        assert_eq!(short_out.len(), 2_500);
    }
}
