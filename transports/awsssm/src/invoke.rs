//! Sending commands and waiting for them: the SendCommand / GetCommandInvocation
//! / CancelCommand cycle, with the rules that keep a command from running twice.
//!
//! Helper commands (read-backs, file chunks, clean-up) are idempotent and are
//! sent again freely. A command that must run once carries a fresh token in
//! its Comment and takes a lock directory on the instance before doing
//! anything. When SendCommand fails in a way that leaves open whether SSM
//! accepted it, the instance's invocations are listed once for that Comment;
//! if none shows up the command is sent again, and should the first copy
//! have arrived after all, the lock makes the second answer `dup` and the
//! session follows the first copy, found by listing until `invocation_wait`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Duration;

use crate::api::{self, Invocation, Phase};
use crate::error::Error;
use crate::framing;
use crate::http::{CallError, Host, Idempotency, Level};
use crate::poll::{self, Hint, Poller};
use crate::remote::Remote;

/// `executionTimeout` of helper commands, in seconds.
pub const HELPER_EXECUTION_TIMEOUT: u64 = 120;
/// Helper commands in flight at once.
pub const WINDOW: usize = 4;
/// Attempts at one helper command whose answer does not check out.
const HELPER_TRIES: u32 = 3;
/// Times a command is sent again after a quick look did not find it.
const RESENDS: u32 = 2;

/// A script to send and how.
#[derive(Debug, Clone)]
pub struct Job {
    /// The script.
    pub script: String,
    /// The token in its status lines and, for commands sent once, its lock.
    pub token: String,
    /// `Comment`; unique per command that is sent once.
    pub comment: String,
    /// The document's `executionTimeout`, seconds.
    pub execution_timeout: u64,
    /// Whether sending it twice is harmless.
    pub idempotency: Idempotency,
    /// Whether it starts in the session's working directory.
    pub in_working_directory: bool,
}

impl Job {
    /// A helper job: idempotent, short, outside the working directory.
    pub fn helper(script: String, token: &str, what: &str) -> Job {
        Job {
            script,
            token: token.to_string(),
            comment: format!("railbox {token} {what}"),
            execution_timeout: HELPER_EXECUTION_TIMEOUT,
            idempotency: Idempotency::Safe,
            in_working_directory: false,
        }
    }
}

/// A command SSM accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its CommandId.
    pub command_id: String,
    /// When it was sent, monotonic.
    pub at: Duration,
    /// When it was sent, wall clock in milliseconds.
    pub wall_ms: i64,
}

/// Why waiting for a command ended without a result.
#[derive(Debug)]
pub enum Waited {
    /// The deadline passed while it ran; it has been cancelled.
    Deadline,
    /// Polling failed for good; the command has been cancelled.
    Failed(Error),
}

/// What a helper's answer means.
pub enum Verdict {
    /// Accepted.
    Done,
    /// Send the helper again, for this reason.
    Retry(String),
}

impl<H: Host> Remote<H> {
    /// Send `job` and wait for its result, following the first copy if this
    /// one answers `dup`; cancels the command if waiting fails.
    pub fn settle(
        &self,
        job: &Job,
        deadline: Duration,
        hint: &Cell<Hint>,
    ) -> Result<Invocation, Waited> {
        let mut current = self.send(job, deadline).map_err(Waited::Failed)?;
        let mut followed = false;
        loop {
            let inv = match self.wait(&current, deadline, hint) {
                Ok(inv) => inv,
                Err(waited) => {
                    self.cancel(&current);
                    return Err(waited);
                }
            };
            let dup = framing::status_line(&inv.standard_output_content, &job.token)
                .is_some_and(|(words, _)| words == ["dup"]);
            if !dup || followed {
                return Ok(inv);
            }
            self.log(
                Level::Warn,
                &format!("{} arrived twice; following the first copy", job.comment),
            );
            let wait = self.config.invocation_wait;
            let exclude = [current.command_id.clone()];
            let found = self.find_sent(&job.comment, current.wall_ms, wait, &exclude, deadline);
            let Some(command_id) = found.map_err(Waited::Failed)? else {
                return Err(Waited::Failed(Error::Protocol(format!(
                    "{} holds its lock on {} but its first copy could not be found",
                    job.comment, self.instance.id
                ))));
            };
            current = Sent {
                command_id,
                ..current
            };
            followed = true;
        }
    }

    /// Send one helper job and wait for it.
    pub fn exec(&self, job: &Job, deadline: Duration) -> Result<Invocation, Error> {
        self.settle(job, deadline, &self.helper_hint)
            .map_err(|waited| match waited {
                Waited::Deadline => Error::Timeout(format!(
                    "a helper command on {} did not finish in time",
                    self.instance.id
                )),
                Waited::Failed(e) => e,
            })
    }

    /// Send helper `jobs`, up to [`WINDOW`] at a time, and hand each finished
    /// invocation to `judge`, which may ask for the job to be sent again.
    pub fn exec_many(
        &self,
        jobs: &[Job],
        deadline: Duration,
        mut judge: impl FnMut(usize, &Invocation) -> Result<Verdict, Error>,
    ) -> Result<(), Error> {
        let mut queue: VecDeque<usize> = (0..jobs.len()).collect();
        let mut tries = vec![0u32; jobs.len()];
        let mut in_flight: VecDeque<(usize, Sent)> = VecDeque::new();
        loop {
            while in_flight.len() < WINDOW
                && let Some(i) = queue.pop_front()
            {
                tries[i] += 1;
                in_flight.push_back((i, self.send(&jobs[i], deadline)?));
            }
            let Some((i, sent)) = in_flight.pop_front() else {
                return Ok(());
            };
            let inv = match self.wait(&sent, deadline, &self.helper_hint) {
                Ok(inv) => inv,
                Err(waited) => {
                    self.cancel(&sent);
                    in_flight.iter().for_each(|(_, s)| self.cancel(s));
                    return Err(match waited {
                        Waited::Deadline => Error::Timeout(format!(
                            "helper commands on {} did not finish in time",
                            self.instance.id
                        )),
                        Waited::Failed(e) => e,
                    });
                }
            };
            match judge(i, &inv)? {
                Verdict::Done => {}
                Verdict::Retry(why) if tries[i] < HELPER_TRIES => {
                    self.log(
                        Level::Warn,
                        &format!("{}: {why}; sending it again", jobs[i].comment),
                    );
                    queue.push_front(i);
                }
                Verdict::Retry(why) => {
                    return Err(Error::Protocol(format!(
                        "{} on {} failed {HELPER_TRIES} times: {why}",
                        jobs[i].comment, self.instance.id
                    )));
                }
            }
        }
    }

    /// Send a job. A job sent once is sent again after an ambiguous failure
    /// only if a quick look does not find it (its lock guards the rest).
    pub fn send(&self, job: &Job, deadline: Duration) -> Result<Sent, Error> {
        let working_directory = if job.in_working_directory {
            self.config.working_directory.as_deref()
        } else {
            None
        };
        let body = api::SendCommand {
            instance_id: &self.instance.id,
            document: &self.document,
            script: &job.script,
            execution_timeout: job.execution_timeout,
            delivery_timeout: self.config.delivery_timeout,
            working_directory,
            comment: &job.comment,
        }
        .body();
        let mut resends = 0;
        loop {
            let at = self.host().now();
            let wall_ms = self.host().wall_ms();
            let answer =
                self.client
                    .call(api::SEND_COMMAND, &body, job.idempotency, Some(deadline));
            let why = match answer {
                Ok(response) => {
                    let command_id = api::command_id(&response)?;
                    self.log(
                        Level::Debug,
                        &format!("sent command {command_id} ({})", job.comment),
                    );
                    return Ok(Sent {
                        command_id,
                        at,
                        wall_ms,
                    });
                }
                Err(CallError::Ambiguous(why)) => why,
                Err(e) => return Err(self.call_error("SendCommand", e)),
            };
            self.log(
                Level::Warn,
                &format!("SendCommand may have failed ({why}); looking for it"),
            );
            if let Some(command_id) =
                self.find_sent(&job.comment, wall_ms, Duration::ZERO, &[], deadline)?
            {
                self.log(
                    Level::Info,
                    &format!("found command {command_id}; not sending it again"),
                );
                return Ok(Sent {
                    command_id,
                    at,
                    wall_ms,
                });
            }
            if resends == RESENDS {
                return Err(Error::Io(format!(
                    "SendCommand to {} kept failing: {why}",
                    self.instance.id
                )));
            }
            resends += 1;
            // A service that just failed is given a moment, as any retry is.
            let retry = &self.client.policy;
            let pause = poll::full_jitter(retry.base, retry.cap, resends, self.host().random());
            if self.host().now() + pause >= deadline {
                return Err(Error::Timeout(format!(
                    "SendCommand to {} failed and there is no time left to send it again: {why}",
                    self.instance.id
                )));
            }
            self.log(
                Level::Warn,
                &format!("the command is not listed; sending it again in {pause:?}"),
            );
            self.host().sleep(pause);
        }
    }

    /// Look for the command sent with `comment` since `since_ms` (wall),
    /// other than those in `exclude`, listing until `wait` has passed.
    pub fn find_sent(
        &self,
        comment: &str,
        since_ms: i64,
        wait: Duration,
        exclude: &[String],
        deadline: Duration,
    ) -> Result<Option<String>, Error> {
        let start = self.host().now();
        let give_up = (start + wait).min(deadline);
        let after = poll::format_iso8601(since_ms - 300_000);
        let mut poller = Poller::new(Duration::from_millis(200), self.config.poll_max, None);
        let mut filtered = true;
        loop {
            let after = filtered.then_some(after.as_str());
            match self.list_comment(comment, after, exclude, deadline) {
                Ok(Some(id)) => return Ok(Some(id)),
                Ok(None) => {}
                Err(CallError::Service(e)) if filtered && e.class() == api::ErrorClass::Client => {
                    self.log(
                        Level::Debug,
                        &format!("listing with a time filter failed ({e})"),
                    );
                    filtered = false;
                    continue;
                }
                Err(e @ CallError::Denied(_)) => {
                    return Err(self.call_error("ListCommandInvocations", e));
                }
                Err(e) => self.log(Level::Warn, &format!("ListCommandInvocations failed: {e}")),
            }
            let now = self.host().now();
            if now >= give_up {
                return Ok(None);
            }
            let next = (start + poller.next()).min(give_up);
            self.host().sleep(next.saturating_sub(now));
            poller.advance(self.host().now() - start);
        }
    }

    /// The CommandId of the instance's invocation with `comment`, if listed.
    fn list_comment(
        &self,
        comment: &str,
        after: Option<&str>,
        exclude: &[String],
        deadline: Duration,
    ) -> Result<Option<String>, CallError> {
        let mut next_token: Option<String> = None;
        for _ in 0..20 {
            let body =
                api::list_command_invocations(&self.instance.id, after, next_token.as_deref());
            let response = self.client.call(
                api::LIST_COMMAND_INVOCATIONS,
                &body,
                Idempotency::Safe,
                Some(deadline),
            )?;
            let (listed, next) =
                api::parse_listed(&response).map_err(|e| CallError::Net(e.to_string()))?;
            let mut hits = listed.into_iter().filter(|l| l.comment == comment);
            if let Some(found) = hits.find(|l| !exclude.contains(&l.command_id)) {
                return Ok(Some(found.command_id));
            }
            match next {
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        Ok(None)
    }

    /// Poll a command until it finishes or `deadline` passes.
    pub fn wait(
        &self,
        sent: &Sent,
        deadline: Duration,
        hint: &Cell<Hint>,
    ) -> Result<Invocation, Waited> {
        let config = &self.config;
        let mut poller = Poller::new(config.poll_initial, config.poll_max, hint.get().get());
        let body = api::get_command_invocation(&sent.command_id, &self.instance.id);
        let mut last_try = false;
        loop {
            let now = self.host().now();
            let mut at = sent.at + poller.next();
            if at >= deadline {
                if last_try {
                    return Err(Waited::Deadline);
                }
                last_try = true;
                at = deadline;
            }
            self.host().sleep(at.saturating_sub(now));
            let answer = self.client.call(
                api::GET_COMMAND_INVOCATION,
                &body,
                Idempotency::Safe,
                Some(deadline),
            );
            let elapsed = self.host().now() - sent.at;
            match answer {
                Ok(response) => {
                    let inv = Invocation::parse(&response).map_err(Waited::Failed)?;
                    if inv.phase() != Phase::Running {
                        learn(hint, sent, &inv, elapsed);
                        return Ok(inv);
                    }
                }
                Err(CallError::Service(e))
                    if e.is("InvocationDoesNotExist") || e.is("InvalidCommandId") =>
                {
                    if elapsed > config.invocation_wait {
                        return Err(Waited::Failed(Error::Protocol(format!(
                            "command {} on {} did not appear in GetCommandInvocation within \
                             invocation_wait ({} s)",
                            sent.command_id,
                            self.instance.id,
                            config.invocation_wait.as_secs()
                        ))));
                    }
                }
                Err(CallError::Deadline(_)) => return Err(Waited::Deadline),
                Err(CallError::Net(why)) => {
                    self.log(
                        Level::Warn,
                        &format!("polling {} failed: {why}", sent.command_id),
                    );
                }
                Err(e) => return Err(Waited::Failed(self.call_error("GetCommandInvocation", e))),
            }
            if last_try {
                return Err(Waited::Deadline);
            }
            poller.advance(elapsed);
        }
    }

    /// Ask SSM to stop a command; failures are logged, not returned.
    pub fn cancel(&self, sent: &Sent) {
        let body = api::cancel_command(&sent.command_id, &self.instance.id);
        let deadline = self.host().now() + Duration::from_secs(10);
        match self.client.call(
            api::CANCEL_COMMAND,
            &body,
            Idempotency::Safe,
            Some(deadline),
        ) {
            Ok(_) => self.log(
                Level::Info,
                &format!("cancelled command {}", sent.command_id),
            ),
            Err(e) => self.log(
                Level::Warn,
                &format!("could not cancel command {}: {e}", sent.command_id),
            ),
        }
    }
}

/// Remember how long a finished command took, for the next poll schedule:
/// from its end time if the service gave one, else from when it was seen.
fn learn(hint: &Cell<Hint>, sent: &Sent, inv: &Invocation, observed: Duration) {
    let end = poll::parse_iso8601_ms(&inv.execution_end_date_time)
        .map(|end| end - sent.wall_ms)
        .filter(|ms| (0..600_000).contains(ms))
        .map(|ms| Duration::from_millis(ms as u64));
    let mut h = hint.get();
    h.record(end.unwrap_or(observed).min(observed));
    hint.set(h);
}
