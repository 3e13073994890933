//! The conformance suite: the behaviours every transport must get right,
//! run over one session and reported as pass or fail.
//!
//! A vendor runs `railbox conformance URL` against a target of theirs before
//! shipping a transport; railbox's own transports run it in CI. Each check
//! states what it expected and what came back, so a failure says what to
//! fix. The checks use only the contract: run, upload, download, and the
//! generic file and platform layer on top of them.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::files::{self, FileKind};
use crate::platform;
use crate::session::Session;

/// How long one check's command may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether the transport behaved.
    pub passed: bool,
    /// What was seen, or what went wrong.
    pub detail: String,
    /// How long the check took, in seconds.
    pub seconds: f64,
}

type Outcome = Result<String, String>;

/// Run every check over `session`, in order; a failed check does not stop
/// the ones after it.
pub async fn run(session: &mut Session) -> Vec<Check> {
    let mut checks = Vec::new();
    macro_rules! check {
        ($name:literal, $body:expr) => {{
            let started = Instant::now();
            let outcome: Outcome = $body.await;
            checks.push(Check {
                name: $name,
                passed: outcome.is_ok(),
                detail: outcome.unwrap_or_else(|e| e),
                seconds: started.elapsed().as_secs_f64(),
            });
        }};
    }
    check!("echo", expect_stdout(session, "echo railbox", b"railbox\n"));
    check!("stderr", stderr(session));
    check!("exit 123", exit_status(session));
    check!("timeout", timeout(session));
    check!(
        "unicode",
        expect_stdout(
            session,
            "printf '%s\\n' 'héllo wörld ✓ 世界 🦀'",
            "héllo wörld ✓ 世界 🦀\n".as_bytes()
        )
    );
    check!("1 MiB of output", mebibyte(session));
    check!("file kinds", file_kinds(session));
    check!("binary round trip", binary_round_trip(session));
    check!("platform detection", detection(session));
    checks
}

async fn run_ok(
    session: &mut Session,
    command: &str,
) -> Result<crate::bindings::types::CommandOutput, String> {
    session
        .run(command, TIMEOUT)
        .await
        .map_err(|e| format!("{command:?} failed: {e}"))
}

async fn expect_stdout(session: &mut Session, command: &str, want: &[u8]) -> Outcome {
    let out = run_ok(session, command).await?;
    if out.stdout == want && out.exit_status == 0 {
        Ok(format!("{} bytes, status 0", want.len()))
    } else {
        Err(format!(
            "expected {:?} and status 0, got {:?} and status {}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&out.stdout),
            out.exit_status
        ))
    }
}

async fn stderr(session: &mut Session) -> Outcome {
    let out = run_ok(session, "echo to-out; echo to-err >&2").await?;
    match (out.stdout.as_slice(), out.stderr.as_slice()) {
        (b"to-out\n", b"to-err\n") => Ok("stdout and stderr apart".into()),
        (out, err) => Err(format!(
            "expected \"to-out\\n\" and \"to-err\\n\", got {:?} and {:?}",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(err)
        )),
    }
}

async fn exit_status(session: &mut Session) -> Outcome {
    let out = run_ok(session, "exit 123").await?;
    if out.exit_status == 123 {
        Ok("status 123".into())
    } else {
        Err(format!("expected status 123, got {}", out.exit_status))
    }
}

async fn timeout(session: &mut Session) -> Outcome {
    let started = Instant::now();
    match session.run("sleep 60", Duration::from_secs(3)).await {
        Err(e) if e.is_timeout() => {}
        Err(e) => return Err(format!("expected a timeout error, got: {e}")),
        Ok(out) => {
            return Err(format!(
                "expected a timeout, the command ended with status {}",
                out.exit_status
            ));
        }
    }
    let waited = started.elapsed();
    let after = run_ok(session, "echo after").await?;
    if after.stdout != b"after\n" {
        return Err("the session did not work after the timeout".into());
    }
    Ok(format!(
        "timed out after {:.1} s, then the next command ran",
        waited.as_secs_f64()
    ))
}

async fn mebibyte(session: &mut Session) -> Outcome {
    let out = run_ok(
        session,
        "dd if=/dev/zero bs=1024 count=1024 2>/dev/null | tr '\\000' x",
    )
    .await?;
    if out.stdout.len() == 1 << 20 && out.stdout.iter().all(|&b| b == b'x') {
        Ok("1,048,576 bytes, byte-exact".into())
    } else {
        Err(format!(
            "expected 1,048,576 × \"x\", got {} bytes",
            out.stdout.len()
        ))
    }
}

/// Make a scratch directory on the target, run `fill` in it, and return
/// its path; the caller removes it.
async fn scratch(session: &mut Session, fill: &str) -> Result<String, String> {
    let made = run_ok(
        session,
        &format!("d=$(mktemp -d) && cd \"$d\" && {fill} && printf %s \"$d\""),
    )
    .await?;
    let dir = String::from_utf8_lossy(&made.stdout).trim().to_string();
    if made.exit_status != 0 || !dir.starts_with('/') {
        return Err(format!(
            "could not make a scratch directory: {:?}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    Ok(dir)
}

async fn file_kinds(session: &mut Session) -> Outcome {
    let dir = scratch(session, ": > file && mkdir dir && ln -s file link").await?;
    let result = async {
        for (name, want) in [
            ("file", Some(FileKind::File)),
            ("dir", Some(FileKind::Directory)),
            ("link", Some(FileKind::Symlink)),
            ("missing", None),
        ] {
            let path = format!("{dir}/{name}");
            let got = files::stat(session, &path)
                .await
                .map_err(|e| e.to_string())?;
            let kind = got.as_ref().map(|s| s.kind);
            if kind != want {
                return Err(format!("{name}: expected {want:?}, got {kind:?}"));
            }
            if name == "link" && got.and_then(|s| s.link_target).as_deref() != Some("file") {
                return Err("link: its target should read \"file\"".into());
            }
        }
        Ok("file, directory, symlink and missing told apart".to_string())
    }
    .await;
    let _ = files::remove(session, &dir, true).await;
    result
}

async fn binary_round_trip(session: &mut Session) -> Outcome {
    let mut data: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    data.extend((0..64 * 1024).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as u8
    }));
    let dir = scratch(session, "true").await?;
    let path = format!("{dir}/binary 'round' trip");
    let result = async {
        files::write(session, &path, &data, Some(0o600))
            .await
            .map_err(|e| e.to_string())?;
        let sum = files::sha256(session, &path)
            .await
            .map_err(|e| e.to_string())?;
        if sum != files::hex_sha256(&data) {
            return Err(format!("the target's SHA-256 is {sum}, not the data's"));
        }
        let back = files::read(session, &path)
            .await
            .map_err(|e| e.to_string())?;
        if back != data {
            return Err(format!(
                "{} bytes sent, {} different bytes came back",
                data.len(),
                back.len()
            ));
        }
        Ok(format!("{} bytes up and down, SHA-256 matches", data.len()))
    }
    .await;
    let _ = files::remove(session, &dir, true).await;
    result
}

async fn detection(session: &mut Session) -> Outcome {
    let found = platform::detect(session).await.map_err(|e| e.to_string())?;
    if found.families.is_empty() || found.name.is_empty() {
        return Err(format!("no platform: {found:?}"));
    }
    Ok(format!(
        "{} ({}), {}",
        found.name,
        found.families.join(", "),
        found.arch
    ))
}
