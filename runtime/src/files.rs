//! Files over any transport, built on run-command: stat, existence, read,
//! atomic write, SHA-256, mkdir and remove, one command each (a transfer
//! takes one per chunk).
//!
//! On POSIX targets `stat -c` (GNU coreutils and busybox) answers, with
//! `stat -f` for the BSDs and macOS. Paths are passed as one single-quoted
//! shell word after `--` wherever the tool takes it, so spaces, quotes,
//! newlines, `$(...)` and leading dashes stay part of the name. Reads and
//! writes use the transport's native transfer and fall back to base64
//! chunks through commands, checked by SHA-256, when it has none.
//!
//! Only POSIX shells are served. Windows targets need the same operations
//! in PowerShell (`Get-Item`, `[IO.File]::WriteAllBytes`, `Get-FileHash`);
//! they are not written yet, and the commands here fail on them.

use std::time::Duration;

use serde::Serialize;

use crate::session::{Session, SessionError};

/// What kind of file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    Symlink,
    /// A named pipe.
    Pipe,
    /// A socket.
    Socket,
    /// A character device.
    CharacterDevice,
    /// A block device.
    BlockDevice,
    /// Something the target's `stat` names otherwise.
    Other,
}

/// What `stat` says of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileStat {
    /// The kind of file.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, such as `0o644`.
    pub mode: u32,
    /// Owner's name, or the uid as text when it has none.
    pub owner: String,
    /// Group's name, or the gid as text when it has none.
    pub group: String,
    /// Owner's uid.
    pub uid: u32,
    /// Group's gid.
    pub gid: u32,
    /// Last modification, in seconds since the Unix epoch.
    pub mtime: i64,
    /// Where a symbolic link points, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// Why a file question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The transport failed to run the command.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The target answered something this module cannot read.
    #[error("cannot stat {path}: {reason}")]
    Unreadable {
        /// The path asked about.
        path: String,
        /// What came back instead.
        reason: String,
    },
    /// The target refused or failed the operation.
    #[error("cannot {action} {path}: {reason}")]
    Failed {
        /// What was being done, such as `write`.
        action: &'static str,
        /// The path.
        path: String,
        /// The target's own words, or what went wrong.
        reason: String,
    },
}

impl FilesError {
    fn failed(action: &'static str, path: &str, reason: impl Into<String>) -> FilesError {
        FilesError::Failed {
            action,
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// Raw bytes per chunk of a transfer through commands: its base64 fits in
/// one command line or one answer on every transport.
pub const CHUNK: usize = 24 * 1024;

/// How long one file command may take on the target.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The first word of every answer.
const MARK: &str = "railbox-stat-1";

/// `s` as one single-quoted POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The one command that stats `path`: the fields on separate lines, then the
/// link target, if any, as the rest of the output.
fn stat_script(path: &str) -> String {
    let p = shell_quote(path);
    format!(
        r#"p={p}
if [ ! -e "$p" ] && [ ! -h "$p" ]; then echo "{MARK} missing"; exit 0; fi
if stat -c %s / >/dev/null 2>&1; then
  echo "{MARK} posix"; stat -c '%F
%s
%a
%U
%G
%u
%g
%Y' -- "$p" || exit 1
else
  echo "{MARK} bsd"; stat -f '%HT
%z
%Lp
%Su
%Sg
%u
%g
%m' -- "$p" || exit 1
fi
if [ -h "$p" ]; then readlink -- "$p"; fi
"#
    )
}

/// Stat `path` on the target, without following a final symbolic link;
/// `None` when nothing is there.
pub async fn stat(session: &mut Session, path: &str) -> Result<Option<FileStat>, FilesError> {
    let out = session.run(&stat_script(path), COMMAND_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_stat(&text).map_err(|reason| FilesError::Unreadable {
        path: path.to_string(),
        reason: if out.stderr.is_empty() {
            reason
        } else {
            format!(
                "{reason}; stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        },
    })
}

/// Whether anything (a dangling symbolic link too) is at `path`.
pub async fn exists(session: &mut Session, path: &str) -> Result<bool, FilesError> {
    Ok(stat(session, path).await?.is_some())
}

/// Read the file at `path`: the transport's own download, or chunks
/// through commands when it has none.
pub async fn read(session: &mut Session, path: &str) -> Result<Vec<u8>, FilesError> {
    match session.download(path).await {
        Err(e) if e.is_unsupported() => read_by_commands(session, path)
            .await
            .map_err(|e| without_shell("read", path, "download", e)),
        other => Ok(other?),
    }
}

/// Write `data` to `path` atomically (a temporary file beside it, then a
/// rename): the transport's own upload, or chunks through commands.
pub async fn write(
    session: &mut Session,
    path: &str,
    data: &[u8],
    mode: Option<u32>,
) -> Result<(), FilesError> {
    match session.upload(path, data, mode).await {
        Err(e) if e.is_unsupported() => write_by_commands(session, path, data, mode)
            .await
            .map_err(|e| without_shell("write", path, "upload", e)),
        other => Ok(other?),
    }
}

/// Say so when the fallback failed because the transport cannot run shell
/// commands either.
fn without_shell(action: &'static str, path: &str, native: &str, err: FilesError) -> FilesError {
    match err {
        FilesError::Session(e) if e.is_unsupported() => FilesError::failed(
            action,
            path,
            format!("the transport has no {native} of its own, and running commands failed: {e}"),
        ),
        other => other,
    }
}

/// Run one of this module's scripts; its stdout, or its stderr as the
/// reason it failed.
async fn script(
    session: &mut Session,
    action: &'static str,
    path: &str,
    script: &str,
) -> Result<Vec<u8>, FilesError> {
    let out = session.run(script, COMMAND_TIMEOUT).await?;
    if out.exit_status == 0 {
        return Ok(out.stdout);
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    let reason = match out.exit_status {
        3 => "nothing is there".to_string(),
        4 => "it is not a regular file".to_string(),
        _ if said.is_empty() => format!("the command failed with status {}", out.exit_status),
        _ => said.lines().last().unwrap_or(said).to_string(),
    };
    Err(FilesError::failed(action, path, reason))
}

/// The SHA-256 of the file at `path`, as lowercase hex.
pub async fn sha256(session: &mut Session, path: &str) -> Result<String, FilesError> {
    let p = shell_quote(path);
    let out = script(
        session,
        "checksum",
        path,
        &format!(
            "p={p}\n[ -e \"$p\" ] || exit 3\n[ -f \"$p\" ] || exit 4\n{}",
            SHA256_OF_P
        ),
    )
    .await?;
    let text = String::from_utf8_lossy(&out);
    let hex = text.split_whitespace().next().unwrap_or_default();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(FilesError::failed(
            "checksum",
            path,
            "no SHA-256 tool answered (sha256sum, shasum, openssl)",
        ))
    }
}

/// Prints `HEX ...` for the file `$p` with whichever tool the target has.
/// The file comes on stdin, so no tool sees (or escapes) its name.
const SHA256_OF_P: &str = "if command -v sha256sum >/dev/null 2>&1; then sha256sum < \"$p\"\n\
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < \"$p\"\n\
    else openssl dgst -sha256 -r < \"$p\"; fi";

/// Make a directory and any missing parents; one that exists is fine.
pub async fn mkdir(session: &mut Session, path: &str) -> Result<(), FilesError> {
    let p = shell_quote(path);
    script(session, "make directory", path, &format!("mkdir -p -- {p}")).await?;
    Ok(())
}

/// Remove what is at `path`: a file or link, an empty directory, or with
/// `recursive` a whole tree. Nothing there is fine.
pub async fn remove(session: &mut Session, path: &str, recursive: bool) -> Result<(), FilesError> {
    let p = shell_quote(path);
    let dir = if recursive { "rm -rf --" } else { "rmdir --" };
    let text = format!(
        "p={p}\nif [ -d \"$p\" ] && [ ! -h \"$p\" ]; then {dir} \"$p\"\n\
         elif [ -e \"$p\" ] || [ -h \"$p\" ]; then rm -f -- \"$p\"; fi"
    );
    script(session, "remove", path, &text).await?;
    Ok(())
}

/// Read a file in base64 chunks, each one command, then check the whole.
pub async fn read_by_commands(session: &mut Session, path: &str) -> Result<Vec<u8>, FilesError> {
    use base64::Engine as _;
    let p = shell_quote(&no_dash(path));
    let head = format!(
        "p={p}\n[ -e \"$p\" ] || exit 3\n[ -f \"$p\" ] || exit 4\nwc -c < \"$p\"\n{SHA256_OF_P}"
    );
    let out = script(session, "read", path, &head).await?;
    let text = String::from_utf8_lossy(&out);
    let mut words = text.split_whitespace();
    let (Some(size), Some(whole)) = (
        words.next().and_then(|w| w.parse::<u64>().ok()),
        words.next(),
    ) else {
        return Err(FilesError::failed(
            "read",
            path,
            format!("unexpected answer {:?}", text.trim()),
        ));
    };
    let mut data = Vec::with_capacity(size as usize);
    for index in 0..size.div_ceil(CHUNK as u64) {
        let chunk = format!("dd if={p} bs={CHUNK} skip={index} count=1 2>/dev/null | base64");
        let out = script(session, "read", path, &chunk).await?;
        let clean: Vec<u8> = out
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| {
                FilesError::failed("read", path, format!("chunk {index} is not base64: {e}"))
            })?;
        data.extend_from_slice(&bytes);
    }
    if data.len() as u64 != size || hex_sha256(&data) != whole.to_ascii_lowercase() {
        return Err(FilesError::failed(
            "read",
            path,
            "the file changed while it was read, or arrived damaged",
        ));
    }
    Ok(data)
}

/// Write a file in base64 chunks appended to a temporary file beside it,
/// each one command; check the whole, then rename it into place.
pub async fn write_by_commands(
    session: &mut Session,
    path: &str,
    data: &[u8],
    mode: Option<u32>,
) -> Result<(), FilesError> {
    use base64::Engine as _;
    let path_word = no_dash(path);
    let p = shell_quote(&path_word);
    let t = shell_quote(&format!("{path_word}.railbox-tmp"));
    let open =
        format!("[ -d {p} ] && {{ echo 'it is a directory' >&2; exit 1; }}\nt={t}\n: > \"$t\"");
    script(session, "write", path, &open).await?;
    let written = async {
        for chunk in data.chunks(CHUNK) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(chunk);
            let append = format!("t={t}\nprintf %s {b64} | base64 -d >> \"$t\"");
            script(session, "write", path, &append).await?;
        }
        let chmod = mode.map_or(String::new(), |m| {
            format!("chmod {:o} \"$t\" &&\n", m & 0o7777)
        });
        let finish = format!(
            "t={t}\np=\"$t\"\nsum=$({SHA256_OF_P}) || exit 1\nset -- $sum\n\
             [ \"$1\" = {} ] || {{ echo 'the file arrived damaged' >&2; exit 1; }}\n\
             {chmod}mv -f -- \"$t\" {p}",
            hex_sha256(data)
        );
        script(session, "write", path, &finish).await?;
        Ok(())
    }
    .await;
    if written.is_err() {
        let _ = session.run(&format!("rm -f -- {t}"), COMMAND_TIMEOUT).await;
    }
    written
}

/// `path`, with `./` in front if it is relative and starts with `-`, so
/// that tools without `--` do not take it for an option.
fn no_dash(path: &str) -> String {
    if path.starts_with('-') {
        format!("./{path}")
    } else {
        path.to_string()
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

fn parse_stat(text: &str) -> Result<Option<FileStat>, String> {
    let mut lines = text.lines();
    let flavour = lines
        .by_ref()
        .find_map(|l| l.strip_prefix(MARK))
        .map(str::trim)
        .ok_or_else(|| format!("no answer from the stat command: {:?}", first_line(text)))?;
    if flavour == "missing" {
        return Ok(None);
    }
    let fields: Vec<&str> = lines.by_ref().take(8).collect();
    let [kind, size, mode, owner, group, uid, gid, mtime] = fields[..] else {
        return Err(format!("stat printed {} of 8 fields", fields.len()));
    };
    let number = |name: &str, value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{name} is not a number: {value:?}"))
    };
    let kind = kind_of(kind.trim());
    let rest: Vec<&str> = lines.collect();
    let link_target = (kind == FileKind::Symlink && !rest.is_empty()).then(|| rest.join("\n"));
    Ok(Some(FileStat {
        kind,
        size: number("size", size)? as u64,
        mode: u32::from_str_radix(mode.trim(), 8)
            .map_err(|_| format!("mode is not octal: {mode:?}"))?,
        owner: owner.trim().to_string(),
        group: group.trim().to_string(),
        uid: number("uid", uid)? as u32,
        gid: number("gid", gid)? as u32,
        mtime: number("mtime", mtime)?,
        link_target,
    }))
}

fn kind_of(text: &str) -> FileKind {
    match text.to_ascii_lowercase().as_str() {
        "regular file" | "regular empty file" => FileKind::File,
        "directory" => FileKind::Directory,
        "symbolic link" => FileKind::Symlink,
        "fifo" | "fifo file" => FileKind::Pipe,
        "socket" => FileKind::Socket,
        "character special file" | "character device" => FileKind::CharacterDevice,
        "block special file" | "block device" => FileKind::BlockDevice,
        _ => FileKind::Other,
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_busybox_and_bsd_answers_parse() {
        let gnu = "railbox-stat-1 posix\nregular file\n1234\n644\nroot\nadm\n0\n4\n1700000000\n";
        let stat = parse_stat(gnu).unwrap().unwrap();
        assert_eq!(stat.kind, FileKind::File);
        assert_eq!(
            (stat.size, stat.mode, stat.mtime),
            (1234, 0o644, 1_700_000_000)
        );
        assert_eq!(
            (stat.owner.as_str(), stat.group.as_str(), stat.uid, stat.gid),
            ("root", "adm", 0, 4)
        );
        assert_eq!(stat.link_target, None);

        let bsd = "railbox-stat-1 bsd\nSymbolic Link\n11\n755\nwheel\nstaff\n0\n20\n1700000001\n/etc/hosts\n";
        let stat = parse_stat(bsd).unwrap().unwrap();
        assert_eq!(stat.kind, FileKind::Symlink);
        assert_eq!(stat.link_target.as_deref(), Some("/etc/hosts"));
        assert_eq!(stat.mode, 0o755);
    }

    #[test]
    fn a_missing_path_and_a_confused_answer_differ() {
        assert_eq!(parse_stat("railbox-stat-1 missing\n").unwrap(), None);
        assert!(parse_stat("sh: stat: not found\n").is_err());
        assert!(parse_stat("railbox-stat-1 posix\nregular file\n12\n").is_err());
    }

    #[test]
    fn quoting_keeps_hostile_names_one_word() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("'; rm -rf ~ #"), r"''\''; rm -rf ~ #'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }
}
