//! Running a command's script on an emulated instance.
//!
//! Like the agent, the emulator writes the joined `commands` to `_script.sh`
//! and runs it with `sh`. Each run gets its own process group so that an
//! execution timeout or a cancel can kill everything the script started.
//! Output is read until both pipes close, which is also how the agent behaves:
//! a background job that keeps stdout open keeps the command running.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::oneshot;

use crate::output::Capture;

/// How long to wait for pipes to close after killing a process group whose
/// members escaped into another group and still hold them open.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// Exit code the agent reports for a killed command on Unix.
pub(crate) const KILLED_EXIT_CODE: i32 = 137;

/// Everything needed to start one script.
pub(crate) struct ScriptRun {
    /// The script text: commands joined with newlines, plus a final newline.
    pub(crate) script: String,
    /// The command's directory, removed with everything in it afterwards.
    pub(crate) command_dir: PathBuf,
    /// Where `_script.sh` goes, relative to `command_dir`.
    pub(crate) plugin_dir: PathBuf,
    /// The working directory.
    pub(crate) cwd: PathBuf,
    /// The complete environment of the script.
    pub(crate) env: BTreeMap<String, String>,
    /// The execution timeout.
    pub(crate) timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The script exited with this status (128 + signal if it was killed by one).
    Exited(i32),
    /// The execution timeout expired and the group was killed.
    TimedOut,
    /// The run was cancelled and the group was killed.
    Cancelled,
}

/// The result of a run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) ending: Ending,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
}

/// Runs a script, calling `started` with its process group id once it runs.
///
/// A message on `cancel` (or the sender being dropped by shutdown) kills the
/// group. Errors are failures to write the script or start `sh`.
pub(crate) async fn run_script(
    run: ScriptRun,
    started: impl FnOnce(i32),
    cancel: oneshot::Receiver<()>,
) -> io::Result<Finished> {
    let script_dir = run.command_dir.join(&run.plugin_dir);
    tokio::fs::create_dir_all(&script_dir).await?;
    let script_path = script_dir.join("_script.sh");
    tokio::fs::write(&script_path, run.script.as_bytes()).await?;

    let mut command = Command::new("sh");
    command
        .arg(&script_path)
        .current_dir(&run.cwd)
        .env_clear()
        .envs(&run.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            remove_dir(&run.command_dir).await;
            return Err(e);
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    started(pgid);

    let stdout = Arc::new(Mutex::new(Capture::default()));
    let stderr = Arc::new(Mutex::new(Capture::default()));
    let out_reader = tokio::spawn(drain(child.stdout.take(), Arc::clone(&stdout)));
    let err_reader = tokio::spawn(drain(child.stderr.take(), Arc::clone(&stderr)));
    let mut completion = Box::pin(async move {
        let status = child.wait().await;
        let _ = out_reader.await;
        let _ = err_reader.await;
        status
    });

    let ending = tokio::select! {
        status = &mut completion => Ending::Exited(exit_code(status)),
        () = tokio::time::sleep(run.timeout) => Ending::TimedOut,
        _ = cancel => Ending::Cancelled,
    };
    if !matches!(ending, Ending::Exited(_)) {
        kill_group(pgid);
        // Collect what the killed processes wrote; give up on escaped holders of the pipes.
        let _ = tokio::time::timeout(DRAIN_AFTER_KILL, &mut completion).await;
    }
    drop(completion);
    remove_dir(&run.command_dir).await;

    let take = |c: &Arc<Mutex<Capture>>| std::mem::take(&mut *lock(c));
    Ok(Finished {
        ending,
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

async fn drain(pipe: Option<impl AsyncRead + Unpin>, into: Arc<Mutex<Capture>>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&into).push(&buf[..n]),
        }
    }
}

fn exit_code(status: io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        Err(_) => -1,
    }
}

fn lock(capture: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    capture
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn remove_dir(dir: &std::path::Path) {
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        tracing::debug!(dir = %dir.display(), error = %e, "could not remove script directory");
    }
}

/// Sends SIGKILL to a whole process group; a group that is already gone is fine.
pub(crate) fn kill_group(pgid: i32) {
    let Some(pid) = Pid::from_raw(pgid) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, Signal::KILL)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pgid, error = %e, "could not kill process group");
    }
}

/// Whether any live (non-zombie) process is still in process group `pgid`.
///
/// Reads `/proc`, so it works only on Linux; elsewhere it answers by signal 0,
/// which also counts zombies.
pub(crate) fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Pid::from_raw(pgid)
            .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok());
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, group)| group == pgid && state != 'Z' && state != 'X')
    })
}

/// Extracts the state and process group from a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Evaluates a script made only of `true`, `false`, `exit N` and plain `echo`.
///
/// Returns `None` when any line needs a real shell (quotes, variables,
/// redirections, globbing, other commands); the caller then runs `sh`.
pub(crate) fn builtin(script: &str) -> Option<Finished> {
    let mut stdout = Vec::new();
    let mut status = 0;
    for raw in script.split('\n') {
        // `sh` splits words on spaces and tabs only: a line with other
        // whitespace (a carriage return, a no-break space) goes to `sh`.
        if raw
            .chars()
            .any(|c| c.is_whitespace() && c != ' ' && c != '\t')
        {
            return None;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.bytes().any(|b| b"$`\\|&;<>(){}*?[]~'\"#".contains(&b)) {
            return None;
        }
        let mut words = line.split_whitespace();
        match words.next()? {
            "true" if words.next().is_none() => status = 0,
            "false" if words.next().is_none() => status = 1,
            "exit" => {
                let code = match (words.next(), words.next()) {
                    (None, _) => status,
                    (Some(n), None) => n.parse::<u8>().ok()?.into(),
                    _ => return None,
                };
                return Some(builtin_finished(Ending::Exited(code), &stdout));
            }
            "echo" => {
                let args: Vec<&str> = words.collect();
                if args.first().is_some_and(|a| a.starts_with('-')) {
                    return None;
                }
                stdout.extend_from_slice(args.join(" ").as_bytes());
                stdout.push(b'\n');
                status = 0;
            }
            _ => return None,
        }
    }
    Some(builtin_finished(Ending::Exited(status), &stdout))
}

fn builtin_finished(ending: Ending, stdout: &[u8]) -> Finished {
    Finished {
        ending,
        stdout: Capture::from_bytes(stdout),
        stderr: Capture::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin_result(script: &str) -> Option<(Ending, String)> {
        builtin(script).map(|f| (f.ending, crate::output::stdout_content(&f.stdout)))
    }

    #[test]
    fn builtins_answer_simple_scripts() {
        assert_eq!(
            builtin_result("true\n"),
            Some((Ending::Exited(0), String::new()))
        );
        assert_eq!(
            builtin_result("false\n"),
            Some((Ending::Exited(1), String::new()))
        );
        assert_eq!(
            builtin_result("echo hello  world\nexit 3\necho never\n"),
            Some((Ending::Exited(3), "hello world\n".into()))
        );
        assert_eq!(
            builtin_result("echo a\nfalse\n"),
            Some((Ending::Exited(1), "a\n".into()))
        );
    }

    #[test]
    fn builtins_decline_anything_needing_a_shell() {
        assert_eq!(builtin_result("echo $HOME\n"), None);
        assert_eq!(builtin_result("echo 'quoted'\n"), None);
        assert_eq!(builtin_result("ls\n"), None);
        assert_eq!(builtin_result("echo -n x\n"), None);
        assert_eq!(builtin_result("exit 300\n"), None);
        assert_eq!(builtin_result("echo hi # a comment\n"), None);
        assert_eq!(builtin_result("echo hi\r\n"), None);
        assert_eq!(builtin_result("echo a\u{a0}b\n"), None);
    }

    #[test]
    fn proc_stat_lines_with_odd_names_parse() {
        assert_eq!(parse_stat("42 (sleep) S 1 42 42 0"), Some(('S', 42)));
        assert_eq!(parse_stat("43 (a) b (c)) Z 1 40 40 0"), Some(('Z', 40)));
    }
}
