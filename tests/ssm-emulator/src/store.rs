//! Commands and their invocations, indexed for O(1) lookup and O(page) listing.
//!
//! Commands are numbered in the order they were sent; the number orders the
//! listings (newest first) and makes pagination tokens. A per-instance index
//! serves the listings filtered by `InstanceId`. Memory is bounded by
//! forgetting the oldest finished commands once too many invocations are kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use tokio::sync::oneshot;

use crate::exec::{Ending, Finished, KILLED_EXIT_CODE};
use crate::output;
use crate::protocol::{CloudWatchOutputConfig, NotificationConfig, Target};

/// The documents the emulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Document {
    /// `AWS-RunShellScript`, plugin `aws:runShellScript`.
    Shell,
    /// `AWS-RunPowerShellScript`, plugin `aws:runPowerShellScript`.
    PowerShell,
}

impl Document {
    /// The document for a name, if it is one of the two supported.
    pub(crate) fn from_name(name: &str) -> Option<Document> {
        match name {
            "AWS-RunShellScript" => Some(Document::Shell),
            "AWS-RunPowerShellScript" => Some(Document::PowerShell),
            _ => None,
        }
    }

    /// The name of the document's only plugin.
    pub(crate) fn plugin(self) -> &'static str {
        match self {
            Document::Shell => "aws:runShellScript",
            Document::PowerShell => "aws:runPowerShellScript",
        }
    }
}

/// Where one invocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    InProgress,
    Cancelling,
    Success,
    Failed,
    ExecutionTimedOut,
    DeliveryTimedOut,
    Cancelled,
}

impl State {
    /// `Status` on the wire.
    pub(crate) fn status(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::InProgress => "InProgress",
            State::Cancelling => "Cancelling",
            State::Success => "Success",
            State::Failed => "Failed",
            State::ExecutionTimedOut | State::DeliveryTimedOut => "TimedOut",
            State::Cancelled => "Cancelled",
        }
    }

    /// `StatusDetails` on the wire, without the spaces of the documentation.
    pub(crate) fn details(self) -> &'static str {
        match self {
            State::ExecutionTimedOut => "ExecutionTimedOut",
            State::DeliveryTimedOut => "DeliveryTimedOut",
            other => other.status(),
        }
    }

    /// A plugin's `Status`, whose enum lacks `Cancelling`.
    pub(crate) fn plugin_status(self) -> &'static str {
        match self {
            State::Cancelling => "InProgress",
            other => other.status(),
        }
    }

    /// Whether the invocation can no longer change.
    pub(crate) fn is_terminal(self) -> bool {
        !matches!(self, State::Pending | State::InProgress | State::Cancelling)
    }
}

/// One instance's share of a command.
pub(crate) struct Invocation {
    /// Index into the emulator's instance list.
    pub(crate) instance: usize,
    pub(crate) state: State,
    pub(crate) response_code: i32,
    pub(crate) started: Option<SystemTime>,
    pub(crate) ended: Option<SystemTime>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) plugin_output: String,
    /// The process group of the script, once started.
    pub(crate) pgid: Option<i32>,
    /// Fires the kill of a running script.
    pub(crate) cancel: Option<oneshot::Sender<()>>,
}

impl Invocation {
    fn new(instance: usize) -> Invocation {
        Invocation {
            instance,
            state: State::Pending,
            response_code: -1,
            started: None,
            ended: None,
            stdout: String::new(),
            stderr: String::new(),
            plugin_output: String::new(),
            pgid: None,
            cancel: None,
        }
    }

    /// Records how a started script ended.
    pub(crate) fn complete(&mut self, finished: &Finished, now: SystemTime) {
        if self.state.is_terminal() {
            return;
        }
        let (state, code) = match finished.ending {
            Ending::Exited(code) if self.state == State::Cancelling => (State::Cancelled, code),
            // 168 is the agent's "succeed and skip the remaining steps".
            Ending::Exited(code @ (0 | 168)) => (State::Success, code),
            Ending::Exited(code) => (State::Failed, code),
            Ending::TimedOut => (State::ExecutionTimedOut, KILLED_EXIT_CODE),
            Ending::Cancelled => (State::Cancelled, KILLED_EXIT_CODE),
        };
        self.state = state;
        self.response_code = code;
        self.ended = Some(now);
        self.cancel = None;
        let stderr = match (state, code) {
            (_, 168) => output::Capture::default(),
            (State::Failed, _) => output::with_failure_line(&finished.stderr, code),
            _ => finished.stderr.clone(),
        };
        self.stdout = output::stdout_content(&finished.stdout);
        self.stderr = output::stderr_content(if code == 168 {
            &finished.stderr
        } else {
            &stderr
        });
        self.plugin_output =
            output::plugin_output(&finished.stdout, &stderr, output::PLUGIN_OUTPUT_LIMIT);
    }

    /// Ends an invocation that never started, with `state`.
    pub(crate) fn end_unstarted(&mut self, state: State, now: SystemTime) {
        if self.state == State::Pending {
            self.state = state;
            self.ended = Some(now);
        }
    }
}

/// A command as sent, plus its invocations.
pub(crate) struct CommandRecord {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) document: Document,
    pub(crate) document_name: String,
    pub(crate) document_version: String,
    pub(crate) comment: String,
    pub(crate) parameters: BTreeMap<String, Vec<String>>,
    pub(crate) instance_ids: Vec<String>,
    pub(crate) targets: Vec<Target>,
    pub(crate) requested: SystemTime,
    pub(crate) requested_at: Instant,
    pub(crate) visible_at: Instant,
    pub(crate) timeout_seconds: i64,
    pub(crate) execution_timeout: u64,
    pub(crate) max_concurrency: String,
    pub(crate) max_errors: String,
    pub(crate) output_s3_region: String,
    pub(crate) output_s3_bucket_name: String,
    pub(crate) output_s3_key_prefix: String,
    pub(crate) service_role: String,
    pub(crate) notification_config: NotificationConfig,
    pub(crate) cloud_watch_output_config: CloudWatchOutputConfig,
    pub(crate) cancel_requested: bool,
    pub(crate) invocations: Vec<Invocation>,
}

/// Counts of invocations by outcome, as the `Command` object reports them.
pub(crate) struct Counts {
    pub(crate) target: i32,
    pub(crate) completed: i32,
    pub(crate) errors: i32,
    pub(crate) delivery_timed_out: i32,
}

impl CommandRecord {
    /// The invocation on instance index `instance`, if the command targets it.
    pub(crate) fn invocation(&self, instance: usize) -> Option<&Invocation> {
        self.invocations.iter().find(|inv| inv.instance == instance)
    }

    /// Whether every invocation has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.invocations.iter().all(|inv| inv.state.is_terminal())
    }

    /// Outcome counts.
    pub(crate) fn counts(&self) -> Counts {
        let count = |f: &dyn Fn(State) -> bool| {
            let n = self.invocations.iter().filter(|inv| f(inv.state)).count();
            i32::try_from(n).unwrap_or(i32::MAX)
        };
        Counts {
            target: count(&|_| true),
            completed: count(&State::is_terminal),
            errors: count(&|s| matches!(s, State::Failed | State::ExecutionTimedOut)),
            delivery_timed_out: count(&|s| s == State::DeliveryTimedOut),
        }
    }

    /// The command's `Status` and `StatusDetails`, aggregated from its invocations.
    pub(crate) fn status(&self) -> (&'static str, &'static str) {
        let states: Vec<State> = self.invocations.iter().map(|inv| inv.state).collect();
        if !states.iter().all(|s| s.is_terminal()) {
            if self.cancel_requested {
                return ("Cancelling", "Cancelling");
            }
            if states.iter().all(|s| *s == State::Pending) {
                return ("Pending", "Pending");
            }
            return ("InProgress", "InProgress");
        }
        let any = |state: State| states.contains(&state);
        let counts = self.counts();
        if any(State::Cancelled) {
            ("Cancelled", "Cancelled")
        } else if counts.errors > self.allowed_errors(counts.target) {
            if any(State::Failed) {
                ("Failed", "Failed")
            } else {
                ("TimedOut", "ExecutionTimedOut")
            }
        } else if any(State::DeliveryTimedOut) {
            ("TimedOut", "DeliveryTimedOut")
        } else if counts.errors > 0 {
            ("Success", "Incomplete")
        } else {
            ("Success", "Success")
        }
    }

    fn allowed_errors(&self, targets: i32) -> i32 {
        match self.max_errors.strip_suffix('%') {
            Some(pct) => pct
                .parse::<i32>()
                .map_or(0, |p| targets.saturating_mul(p) / 100),
            None => self.max_errors.parse().unwrap_or(0),
        }
    }
}

/// All commands the emulator remembers.
pub(crate) struct Store {
    next_seq: u64,
    commands: BTreeMap<u64, CommandRecord>,
    by_id: HashMap<String, u64>,
    by_instance: HashMap<usize, VecDeque<u64>>,
    invocations: usize,
    max_invocations: usize,
}

impl Store {
    /// An empty store keeping about `max_invocations` invocations.
    pub(crate) fn new(max_invocations: usize) -> Store {
        Store {
            next_seq: 1,
            commands: BTreeMap::new(),
            by_id: HashMap::new(),
            by_instance: HashMap::new(),
            invocations: 0,
            max_invocations,
        }
    }

    /// Adds a command targeting the given instance indexes and returns its number.
    pub(crate) fn insert(&mut self, mut record: CommandRecord, instances: &[usize]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        record.seq = seq;
        record.invocations = instances.iter().map(|&i| Invocation::new(i)).collect();
        for &instance in instances {
            self.by_instance.entry(instance).or_default().push_back(seq);
        }
        self.invocations += instances.len();
        self.by_id.insert(record.id.clone(), seq);
        self.commands.insert(seq, record);
        self.evict();
        seq
    }

    /// The command with this id.
    pub(crate) fn by_id(&self, id: &str) -> Option<&CommandRecord> {
        self.commands.get(self.by_id.get(id)?)
    }

    /// The command with this id, for changes.
    pub(crate) fn by_id_mut(&mut self, id: &str) -> Option<&mut CommandRecord> {
        self.commands.get_mut(self.by_id.get(id)?)
    }

    /// The command with this number.
    pub(crate) fn get(&self, seq: u64) -> Option<&CommandRecord> {
        self.commands.get(&seq)
    }

    /// One invocation, for changes.
    pub(crate) fn invocation_mut(&mut self, seq: u64, index: usize) -> Option<&mut Invocation> {
        self.commands.get_mut(&seq)?.invocations.get_mut(index)
    }

    /// Command numbers below `before`, newest first.
    pub(crate) fn newest_first(&self, before: u64) -> impl Iterator<Item = &CommandRecord> {
        self.commands
            .range(..before)
            .rev()
            .map(|(_, record)| record)
    }

    /// Commands targeting instance index `instance` numbered below `before`, newest first.
    pub(crate) fn newest_first_on(
        &self,
        instance: usize,
        before: u64,
    ) -> impl Iterator<Item = &CommandRecord> {
        let seqs = self.by_instance.get(&instance);
        seqs.into_iter()
            .flat_map(|seqs| seqs.iter().rev())
            .filter(move |&&seq| seq < before)
            .filter_map(|seq| self.commands.get(seq))
    }

    /// Every process group still recorded as running.
    pub(crate) fn running_groups(&self) -> Vec<i32> {
        let running =
            |inv: &&Invocation| matches!(inv.state, State::InProgress | State::Cancelling);
        self.commands
            .values()
            .flat_map(|c| {
                c.invocations
                    .iter()
                    .filter(running)
                    .filter_map(|inv| inv.pgid)
            })
            .collect()
    }

    /// Forget the oldest finished commands beyond the retention limit.
    ///
    /// Missing: eviction stops at the oldest command that has not finished,
    /// so one long-pending command (an offline instance, a very long agent
    /// latency) lets memory grow past the limit until it ends; skipping
    /// over it needs an index of finished commands by age.
    fn evict(&mut self) {
        while self.invocations > self.max_invocations {
            let Some(entry) = self.commands.first_entry() else {
                return;
            };
            if !entry.get().is_finished() {
                return;
            }
            let record = entry.remove();
            self.by_id.remove(&record.id);
            for inv in &record.invocations {
                if let Some(seqs) = self.by_instance.get_mut(&inv.instance)
                    && seqs.front() == Some(&record.seq)
                {
                    seqs.pop_front();
                }
            }
            self.invocations -= record.invocations.len();
            tracing::debug!(command_id = %record.id, "forgot oldest finished command");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> CommandRecord {
        let now = Instant::now();
        CommandRecord {
            id: id.into(),
            seq: 0,
            document: Document::Shell,
            document_name: "AWS-RunShellScript".into(),
            document_version: "$DEFAULT".into(),
            comment: String::new(),
            parameters: BTreeMap::new(),
            instance_ids: Vec::new(),
            targets: Vec::new(),
            requested: SystemTime::now(),
            requested_at: now,
            visible_at: now,
            timeout_seconds: 3600,
            execution_timeout: 3600,
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            output_s3_region: String::new(),
            output_s3_bucket_name: String::new(),
            output_s3_key_prefix: String::new(),
            service_role: String::new(),
            notification_config: NotificationConfig::default(),
            cloud_watch_output_config: CloudWatchOutputConfig::default(),
            cancel_requested: false,
            invocations: Vec::new(),
        }
    }

    fn finish(store: &mut Store, seq: u64, index: usize, code: i32) {
        let finished = Finished {
            ending: Ending::Exited(code),
            stdout: output::Capture::default(),
            stderr: output::Capture::default(),
        };
        store
            .invocation_mut(seq, index)
            .unwrap()
            .complete(&finished, SystemTime::now());
    }

    #[test]
    fn command_status_follows_its_invocations() {
        let mut store = Store::new(100);
        let seq = store.insert(record("a"), &[0, 1]);
        assert_eq!(store.get(seq).unwrap().status(), ("Pending", "Pending"));
        store.invocation_mut(seq, 0).unwrap().state = State::InProgress;
        assert_eq!(
            store.get(seq).unwrap().status(),
            ("InProgress", "InProgress")
        );
        finish(&mut store, seq, 0, 0);
        finish(&mut store, seq, 1, 2);
        let command = store.get(seq).unwrap();
        assert_eq!(command.status(), ("Failed", "Failed"));
        assert_eq!(command.counts().errors, 1);
        assert_eq!(command.invocations[1].response_code, 2);
    }

    #[test]
    fn oldest_finished_commands_are_forgotten_first() {
        let mut store = Store::new(2);
        let first = store.insert(record("a"), &[0]);
        finish(&mut store, first, 0, 0);
        let second = store.insert(record("b"), &[0]);
        store.insert(record("c"), &[1]);
        assert!(store.by_id("a").is_none());
        assert!(store.by_id("b").is_some());
        // "b" is still pending, so it stays even though the store is over its budget.
        store.insert(record("d"), &[1]);
        assert!(store.get(second).is_some());
        let on_zero: Vec<&str> = store
            .newest_first_on(0, u64::MAX)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(on_zero, ["b"]);
    }
}
