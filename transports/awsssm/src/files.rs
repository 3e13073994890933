//! File transfer through commands: upload and download, binary-safe and checked.
//!
//! An upload sends the file in base64 chunks of [`UPLOAD_CHUNK`] bytes (48,000
//! characters, well inside SendCommand's 64 KB document limit), each written
//! to its own part file in a private directory, so a chunk sent twice does no
//! harm and up to four are in flight at once. The last chunk's command, sent
//! once all others are confirmed, also joins the parts into a temporary file
//! beside the destination, checks its size and sha256, sets the mode and
//! renames it into place, so the destination is replaced atomically or not at
//! all. That command takes the lock `$d.once` first, so a copy of it sent
//! again after an ambiguous failure answers `dup` instead of joining parts
//! that are gone.
//!
//! A download copies the file into a private directory (a consistent
//! snapshot), prints its size and sha256 and, if small, its content; larger
//! files are read back in chunks as command output is (see `framing`).
//!
//! Status lines use the `RBX1 <token> <word> …` form of `framing`. Windows
//! instances answer `unsupported`, so the host falls back to its own transfer.

use std::time::Duration;

use crate::error::Error;
use crate::framing::{self, quote};
use crate::http::{Host, Idempotency};
use crate::invoke::{HELPER_EXECUTION_TIMEOUT, Job, Verdict};
use crate::remote::Remote;

/// Raw bytes per upload chunk; their base64 is 48,000 characters.
pub const UPLOAD_CHUNK: usize = 36_000;
/// How long one transfer may take, below the host's limit for a call.
pub const TRANSFER_BUDGET: Duration = Duration::from_secs(540);
/// Mode of an uploaded file when the caller gives none.
pub const DEFAULT_MODE: u32 = 0o644;

/// The name of the part file of chunk `i`.
fn part(i: usize) -> String {
    format!("p.{i:06}")
}

/// The opening of an upload script: tools check, the lock of a command sent
/// once (`$d.once`, taken before anything else) and the private directory.
fn upload_prelude(token: &str, once: bool) -> String {
    let lock = if once {
        format!(
            "mkdir -m 700 \"$d.once\" 2>/dev/null || {{ echo \"RBX1 {token} dup\"; exit 1; }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "{}rb_tools || {{ echo \"RBX1 {token} notools\"; exit 1; }}\n{lock}\
         mkdir -m 700 \"$d\" 2>/dev/null; [ -d \"$d\" ] && [ -O \"$d\" ] || \
         {{ echo \"RBX1 {token} baddir\"; exit 1; }}\n",
        framing::prelude(token)
    )
}

/// Shell lines writing chunk `i` to its part file.
fn write_part(token: &str, i: usize, chunk: &[u8]) -> String {
    let p = part(i);
    format!(
        "printf '%s' '{data}' | rb_b64d >\"$d/t{p}\" && mv -f \"$d/t{p}\" \"$d/{p}\" || \
         {{ echo \"RBX1 {token} writefail\"; exit 1; }}\n",
        data = framing::encode(chunk),
    )
}

/// The script of an upload chunk other than the last.
pub fn chunk_script(token: &str, i: usize, chunk: &[u8]) -> String {
    let p = part(i);
    format!(
        "{}{}h=$(rb_sha \"$d/{p}\")\necho \"RBX1 {token} part $(rb_size \"$d/{p}\") ${{h:--}}\"\n",
        upload_prelude(token, false),
        write_part(token, i, chunk)
    )
}

/// The script of the last upload command: the last chunk, if any, then
/// joining `parts` parts into `path` with `size` bytes, `sha256` and `mode`.
pub fn final_script(
    token: &str,
    last: Option<(usize, &[u8])>,
    parts: usize,
    path: &str,
    size: u64,
    sha256: &str,
    mode: u32,
) -> String {
    let mut script = upload_prelude(token, true);
    if let Some((i, chunk)) = last {
        script += &write_part(token, i, chunk);
    }
    let fail = |word: &str| {
        format!("{{ echo \"RBX1 {token} {word}\"; rm -f \"$t\"; rm -rf \"$d\"; exit 1; }}")
    };
    script += &format!(
        r#"p={path}
t="$p.railbox-{token}"
[ -d "$p" ] && {isdir}
( umask 077; : >"$t" ) 2>/dev/null || {{ if [ -d "$(dirname "$p")" ]; then w=cantwrite; else w=noparent; fi; echo "RBX1 {token} $w"; rm -rf "$d"; exit 1; }}
i=0
while [ $i -lt {parts} ]; do
f="$d/p.$(printf %06d $i)"
[ -f "$f" ] || {{ echo "RBX1 {token} missing $i"; rm -f "$t"; rm -rf "$d"; exit 1; }}
cat "$f" >>"$t" || {cantwrite}
i=$((i+1))
done
rm -rf "$d"
s=$(rb_size "$t"); h=$(rb_sha "$t")
if [ "$s" != {size} ] || {{ [ -n "$h" ] && [ "$h" != {sha256} ]; }}; then rm -f "$t"; echo "RBX1 {token} sum $s ${{h:--}}"; exit 1; fi
chmod {mode:o} "$t" && mv -f "$t" "$p" || {mvfail}
echo "RBX1 {token} done $s ${{h:--}}"
"#,
        path = quote(path),
        isdir = fail("isdir"),
        cantwrite = fail("cantwrite"),
        mvfail = fail("mvfail"),
        mode = mode & 0o7777,
    );
    script
}

/// The first download command: check, snapshot, describe and maybe print the file.
pub fn fetch_script(token: &str, path: &str) -> String {
    format!(
        r#"{prelude}rb_tools || {{ echo "RBX1 {token} notools"; exit 1; }}
p={path}
[ -e "$p" ] || {{ echo "RBX1 {token} missing"; exit 1; }}
[ -d "$p" ] && {{ echo "RBX1 {token} isdir"; exit 1; }}
[ -r "$p" ] || {{ echo "RBX1 {token} cantread"; exit 1; }}
mkdir -m 700 "$d" 2>/dev/null; [ -d "$d" ] && [ -O "$d" ] || {{ echo "RBX1 {token} nodir"; exit 1; }}
cat "$p" >"$d/f.$$" && mv -f "$d/f.$$" "$d/f" || {{ rm -rf "$d"; echo "RBX1 {token} cantread"; exit 1; }}
s=$(rb_size "$d/f"); h=$(rb_sha "$d/f")
i=0; [ "$s" -le {inline} ] && i=1
echo "RBX1 {token} file $s ${{h:--}} $i"
[ $i = 1 ] && rb_b64 <"$d/f" && rm -rf "$d"
exit 0
"#,
        prelude = framing::prelude(token),
        path = quote(path),
        inline = framing::OUT_INLINE,
    )
}

/// Turn a failure word of a file script into an error about `path`.
pub fn status_error(op: &str, path: &str, instance: &str, words: &[&str]) -> Error {
    let what = format!("{op} {path} on {instance}");
    match words.first().copied().unwrap_or("") {
        "missing" if words.len() == 1 => Error::NotFound(format!("{what}: no such file")),
        "noparent" => Error::NotFound(format!("{what}: its directory does not exist")),
        "isdir" => Error::Io(format!("{what}: it is a directory")),
        "cantwrite" => Error::Denied(format!("{what}: cannot write there")),
        "cantread" => Error::Denied(format!("{what}: cannot read it")),
        "notools" => Error::Unsupported(format!(
            "{what}: the instance has neither base64 nor openssl"
        )),
        "sum" => Error::Protocol(format!(
            "{what}: the joined file did not check out ({})",
            words[1..].join(" ")
        )),
        _ => Error::Io(format!("{what}: {}", words.join(" "))),
    }
}

fn check_path(path: &str) -> Result<(), Error> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::InvalidTarget(format!(
            "{path:?} is not a usable file path"
        )));
    }
    Ok(())
}

impl<H: Host> Remote<H> {
    /// Write `data` to `path` on the instance, replacing it atomically.
    pub fn upload(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<(), Error> {
        if !self.is_unix() {
            return Err(Error::Unsupported(
                "native upload to Windows instances".into(),
            ));
        }
        check_path(path)?;
        let deadline = self.host().now() + TRANSFER_BUDGET;
        let token = self.host().token();
        let operation = format!("upload {path}");
        let total = data.len() as u64;
        let chunks: Vec<&[u8]> = data.chunks(UPLOAD_CHUNK).collect();
        let (last, rest) = match chunks.split_last() {
            Some((last, rest)) => (Some((rest.len(), *last)), rest),
            None => (None, &[][..]),
        };

        let jobs: Vec<Job> = rest
            .iter()
            .enumerate()
            .map(|(i, c)| Job::helper(chunk_script(&token, i, c), &token, &format!("part {i}")))
            .collect();
        let mut done = 0u64;
        let result = self.exec_many(&jobs, deadline, |i, inv| {
            let words = framing::status_line(&inv.standard_output_content, &token)
                .map(|(w, _)| w)
                .unwrap_or_default();
            let want_sha = framing::sha256_hex(rest[i]);
            match words.as_slice() {
                ["part", size, sha] if *size == rest[i].len().to_string().as_str() => {
                    if *sha != "-" && *sha != want_sha {
                        return Ok(Verdict::Retry(format!("part {i} arrived altered")));
                    }
                }
                ["part", ..] => return Ok(Verdict::Retry(format!("part {i} arrived short"))),
                [] => return Ok(Verdict::Retry(format!("part {i} ended {}", inv.status))),
                _ => return Err(status_error("upload", path, &self.instance.id, &words)),
            }
            done += rest[i].len() as u64;
            self.host().progress(&operation, done, total);
            Ok(Verdict::Done)
        });
        if let Err(e) = result {
            self.cleanup(vec![token.clone()]);
            return Err(e);
        }

        let sha = framing::sha256_hex(data);
        let mode = mode.unwrap_or(DEFAULT_MODE);
        let script = final_script(&token, last, chunks.len(), path, total, &sha, mode);
        let job = Job {
            script,
            token: token.clone(),
            comment: format!("railbox {token}"),
            execution_timeout: HELPER_EXECUTION_TIMEOUT,
            idempotency: Idempotency::Once,
            in_working_directory: true,
        };
        let inv = self.exec(&job, deadline)?;
        self.keep_lock(format!("{token}.once"));
        let words = framing::status_line(&inv.standard_output_content, &token)
            .map(|(w, _)| w)
            .unwrap_or_default();
        match words.as_slice() {
            ["done", size, sha_got]
                if *size == total.to_string() && (*sha_got == "-" || *sha_got == sha) =>
            {
                self.host().progress(&operation, total, total);
                Ok(())
            }
            [] => Err(Error::Protocol(format!(
                "upload {path} on {}: the last command ended {} without a status; stderr: {:?}",
                self.instance.id,
                inv.status,
                inv.standard_error_content
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
            _ => Err(status_error("upload", path, &self.instance.id, &words)),
        }
    }

    /// Read `path` from the instance, byte for byte.
    pub fn download(&self, path: &str) -> Result<Vec<u8>, Error> {
        if !self.is_unix() {
            return Err(Error::Unsupported(
                "native download from Windows instances".into(),
            ));
        }
        check_path(path)?;
        let deadline = self.host().now() + TRANSFER_BUDGET;
        let token = self.host().token();
        let operation = format!("download {path}");
        let job = Job {
            script: fetch_script(&token, path),
            token: token.clone(),
            comment: format!("railbox {token}"),
            execution_timeout: HELPER_EXECUTION_TIMEOUT,
            idempotency: Idempotency::Safe,
            in_working_directory: true,
        };
        let inv = self.exec(&job, deadline)?;
        let Some((words, rest)) = framing::status_line(&inv.standard_output_content, &token) else {
            return Err(Error::Protocol(format!(
                "download {path} on {}: the command ended {} without a status; stderr: {:?}",
                self.instance.id,
                inv.status,
                inv.standard_error_content
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        };
        let (size, sha, inline) = match words.as_slice() {
            ["file", size, sha, inline] => {
                let size: u64 = size.parse().map_err(|_| self.bad_status(path, &words))?;
                let sha = framing::parse_sha(sha).ok_or_else(|| self.bad_status(path, &words))?;
                (size, sha, *inline == "1")
            }
            _ => return Err(status_error("download", path, &self.instance.id, &words)),
        };
        let data = if inline {
            framing::decode(rest).map_err(|why| self.bad_content(path, why))?
        } else {
            let fetched = self.read_back_with(&token, &[("f", size)], deadline, |done| {
                self.host().progress(&operation, done, size)
            });
            self.cleanup(vec![token.clone()]);
            fetched?.pop().unwrap_or_default()
        };
        framing::verify("file", &data, size, sha.as_deref())
            .map_err(|why| self.bad_content(path, why))?;
        self.host().progress(&operation, size, size);
        Ok(data)
    }

    fn bad_status(&self, path: &str, words: &[&str]) -> Error {
        Error::Protocol(format!(
            "download {path} on {}: malformed status {:?}",
            self.instance.id,
            words.join(" ")
        ))
    }

    fn bad_content(&self, path: &str, why: String) -> Error {
        Error::Protocol(format!("download {path} on {}: {why}", self.instance.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_chunks_fit_the_document_limit() {
        let chunk = vec![0xffu8; UPLOAD_CHUNK];
        let script = final_script(
            "t".repeat(32).as_str(),
            Some((99, &chunk)),
            100,
            &"/x".repeat(2000),
            1,
            "a",
            0o644,
        );
        assert!(
            script.len() < crate::remote::MAX_SCRIPT,
            "{} bytes",
            script.len()
        );
        assert!(chunk_script("t", 0, &chunk).len() < crate::remote::MAX_SCRIPT);
    }

    #[test]
    fn failure_words_map_to_error_kinds() {
        let e = |w: &[&str]| status_error("upload", "/p", "i-1", w);
        assert!(matches!(e(&["missing"]), Error::NotFound(_)));
        assert!(matches!(e(&["noparent"]), Error::NotFound(_)));
        assert!(matches!(e(&["cantwrite"]), Error::Denied(_)));
        assert!(matches!(e(&["isdir"]), Error::Io(_)));
        assert!(matches!(e(&["sum", "1", "-"]), Error::Protocol(_)));
        assert!(matches!(e(&["missing", "3"]), Error::Io(_)));
    }

    #[test]
    fn paths_are_quoted_into_scripts() {
        let script = fetch_script("tok", "/tmp/it's here");
        assert!(script.contains(r"p='/tmp/it'\''s here'"));
    }
}
