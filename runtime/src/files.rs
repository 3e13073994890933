//! File questions over any transport, built on run-command: stat and
//! existence, one command each.
//!
//! On POSIX targets `stat -c` (GNU coreutils and busybox) answers, with
//! `stat -f` for the BSDs and macOS. Paths are passed as one single-quoted
//! shell word after `--` wherever the tool takes it, so spaces, quotes,
//! newlines, `$(...)` and leading dashes stay part of the name.

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
}

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
