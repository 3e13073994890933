//! The emulated SSM agent: picks up each invocation, runs it, reports the result.
//!
//! One task per invocation waits out the agent's pickup latency, then either
//! starts the script or, when the instance is not online, waits for the
//! delivery timeout and ends the invocation the way the service does
//! (`TimedOut` / `DeliveryTimedOut`, `ResponseCode` -1).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio::sync::oneshot;

use crate::config::{PingStatus, PlatformType};
use crate::emulator::Shared;
use crate::exec::{self, Ending, Finished, ScriptRun};
use crate::output::Capture;
use crate::store::{Document, State};

/// What a PowerShell document reports on an instance without PowerShell.
const NO_POWERSHELL: &str =
    "failed to run commands: exec: \"powershell\": executable file not found in $PATH";

/// Starts the agent task of every invocation of command `seq`.
pub(crate) fn dispatch(shared: &Arc<Shared>, seq: u64, invocations: usize) {
    for index in 0..invocations {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let mut stop = shared.shutdown_signal();
            tokio::select! {
                () = deliver(&shared, seq, index) => {}
                () = crate::server::stopped(&mut stop) => {}
            }
        });
    }
}

/// What the agent does once it has looked at an invocation.
enum Plan {
    /// The instance cannot take the command; end it at the delivery deadline.
    Undeliverable(Instant),
    /// The command was cancelled or forgotten before pickup.
    Nothing,
    /// Answer without a process.
    Immediate(Finished),
    /// Run a script.
    Script(Pickup, oneshot::Receiver<()>),
}

/// What a picked-up script needs, copied out of the store.
struct Pickup {
    command_id: String,
    instance: usize,
    script: String,
    working_directory: Option<String>,
    timeout: std::time::Duration,
}

async fn deliver(shared: &Arc<Shared>, seq: u64, index: usize) {
    let latency = shared.faults.get().agent_latency_ms.sample();
    tokio::time::sleep(latency).await;

    let finished = match pick_up(shared, seq, index) {
        Plan::Nothing => return,
        Plan::Undeliverable(deadline) => {
            tokio::time::sleep_until(deadline.into()).await;
            if let Some(inv) = shared.store().invocation_mut(seq, index) {
                inv.end_unstarted(State::DeliveryTimedOut, SystemTime::now());
            }
            return;
        }
        Plan::Immediate(finished) => finished,
        Plan::Script(pickup, cancel) => run(shared, seq, index, pickup, cancel).await,
    };

    let mut store = shared.store();
    if let Some(inv) = store.invocation_mut(seq, index) {
        inv.complete(&finished, SystemTime::now());
    }
}

async fn run(
    shared: &Shared,
    seq: u64,
    index: usize,
    pickup: Pickup,
    cancel: oneshot::Receiver<()>,
) -> Finished {
    let script_run = script_run(shared, pickup);
    shared.spawned.fetch_add(1, Ordering::Relaxed);
    let record_group = |pgid| {
        if let Some(inv) = shared.store().invocation_mut(seq, index) {
            inv.pgid = Some(pgid);
        }
    };
    match exec::run_script(script_run, record_group, cancel).await {
        Ok(finished) => finished,
        Err(e) => {
            tracing::warn!(error = %e, "could not start script");
            failure(&format!("failed to run commands: {e}"))
        }
    }
}

/// Moves a pending invocation to InProgress and decides how to run it.
fn pick_up(shared: &Shared, seq: u64, index: usize) -> Plan {
    let mut store = shared.store();
    let Some(command) = store.get(seq) else {
        return Plan::Nothing;
    };
    let Some(inv) = command.invocations.get(index) else {
        return Plan::Nothing;
    };
    if inv.state != State::Pending {
        return Plan::Nothing;
    }
    let instance = &shared.config.instances[inv.instance];
    let deadline = command.requested_at + shared.scaled(command.timeout_seconds.unsigned_abs());
    if instance.ping_status != PingStatus::Online || Instant::now() >= deadline {
        return Plan::Undeliverable(deadline);
    }

    let script = script_text(command.parameters.get("commands"));
    let immediate = match command.document {
        Document::PowerShell => Some(failure(NO_POWERSHELL)),
        Document::Shell if instance.platform_type == PlatformType::Windows => {
            Some(failure(NO_POWERSHELL))
        }
        Document::Shell if shared.config.builtin_commands => exec::builtin(&script),
        Document::Shell => None,
    };
    let pickup = Pickup {
        command_id: command.id.clone(),
        instance: inv.instance,
        script,
        working_directory: command
            .parameters
            .get("workingDirectory")
            .and_then(|v| v.first())
            .cloned(),
        timeout: shared.scaled(command.execution_timeout),
    };

    let Some(inv) = store.invocation_mut(seq, index) else {
        return Plan::Nothing;
    };
    inv.state = State::InProgress;
    inv.started = Some(SystemTime::now());
    if let Some(finished) = immediate {
        return Plan::Immediate(finished);
    }
    let (tx, rx) = oneshot::channel();
    inv.cancel = Some(tx);
    Plan::Script(pickup, rx)
}

/// The commands joined into one script, as the agent writes `_script.sh`.
fn script_text(commands: Option<&Vec<String>>) -> String {
    let mut script = commands.map(|lines| lines.join("\n")).unwrap_or_default();
    script.push('\n');
    script
}

fn script_run(shared: &Shared, pickup: Pickup) -> ScriptRun {
    let home = shared.instance_dir(pickup.instance);
    if let Err(e) = std::fs::create_dir_all(&home) {
        tracing::warn!(dir = %home.display(), error = %e, "could not create instance directory");
    }
    let cwd = working_directory(&home, pickup.working_directory.as_deref());
    let instance_id = &shared.config.instances[pickup.instance].id;
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    env.insert("HOME".into(), home.display().to_string());
    env.insert("SSM_COMMAND_ID".into(), pickup.command_id.clone());
    env.insert("AWS_SSM_INSTANCE_ID".into(), instance_id.clone());
    env.insert("AWS_SSM_REGION_NAME".into(), shared.config.region.clone());
    ScriptRun {
        script: pickup.script,
        command_dir: shared.command_dir(pickup.instance, &pickup.command_id),
        plugin_dir: step_dir(Document::Shell.plugin()),
        cwd,
        env,
        timeout: pickup.timeout,
    }
}

/// The agent's directory for a plugin step, e.g. `awsrunShellScript/0.awsrunShellScript`.
fn step_dir(plugin: &str) -> PathBuf {
    let step = plugin.replace(':', "");
    Path::new(&step).join(format!("0.{step}"))
}

/// Resolves `workingDirectory`: empty means the instance directory; a relative
/// path is taken inside it and, like the agent, falls back to it when missing.
/// An absolute path is used as given; if it does not exist, `sh` fails to start
/// and the invocation fails.
fn working_directory(home: &Path, requested: Option<&str>) -> PathBuf {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return home.to_owned();
    };
    let path = Path::new(requested);
    if path.is_absolute() {
        return path.to_owned();
    }
    // Keep relative paths inside the instance directory.
    let inside = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let candidate = home.join(path);
    if inside && candidate.is_dir() {
        candidate
    } else {
        home.to_owned()
    }
}

fn failure(message: &str) -> Finished {
    Finished {
        ending: Ending::Exited(1),
        stdout: Capture::default(),
        stderr: Capture::from_bytes(message.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_joined_lines_with_a_final_newline() {
        let lines = vec!["cd /tmp".to_owned(), "pwd".to_owned()];
        assert_eq!(script_text(Some(&lines)), "cd /tmp\npwd\n");
    }

    #[test]
    fn relative_working_directories_stay_inside_the_instance() {
        let home = std::env::temp_dir();
        assert_eq!(working_directory(&home, None), home);
        assert_eq!(working_directory(&home, Some("../etc")), home);
        assert_eq!(working_directory(&home, Some("no-such-dir-here")), home);
        assert_eq!(
            working_directory(&home, Some("/var")),
            PathBuf::from("/var")
        );
    }
}
