//! A session's instance: running a command and getting its output whole.
//!
//! [`Remote`] holds what a session knows (client, instance, settings, how
//! long its commands tend to take, what it left on the instance) and runs a
//! command as `framing` describes: wrap it, send it once (`invoke`), map the
//! final status, then take the output from the frame or read it back.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::api::{Invocation, Phase};
use crate::error::Error;
use crate::framing::{self, Header, Stream};
use crate::http::{CallError, Client, Host, Idempotency, Level};
use crate::invoke::{Job, Verdict, Waited};
use crate::options::Config;
use crate::poll::Hint;
use crate::target::Instance;

/// Extra time to read output back after the caller's deadline.
pub const READBACK_GRACE: Duration = Duration::from_secs(45);
/// Largest script SendCommand takes safely (the document limit is 64 KB).
pub const MAX_SCRIPT: usize = 60_000;

/// The result of a command that ran to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Standard error, byte for byte.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub exit: i32,
}

/// A session's view of its instance and the protocol on it.
pub struct Remote<H> {
    /// The SSM client.
    pub client: Client<H>,
    /// The instance.
    pub instance: Instance,
    /// The document commands run with.
    pub document: String,
    /// The session's settings.
    pub config: Config,
    /// How long the session's commands take.
    pub hint: Cell<Hint>,
    /// How long its helper commands take.
    pub helper_hint: Cell<Hint>,
    /// Private directories that could not be removed yet.
    leftovers: RefCell<Vec<String>>,
    /// Empty lock directories of finished commands (see `framing`).
    locks: RefCell<Vec<String>>,
}

impl<H: Host> Remote<H> {
    /// A remote for `instance`, with the document the settings or platform pick.
    pub fn new(client: Client<H>, instance: Instance, config: Config) -> Remote<H> {
        let document = config
            .document
            .clone()
            .unwrap_or_else(|| instance.default_document().to_string());
        Remote {
            client,
            instance,
            document,
            config,
            hint: Cell::default(),
            helper_hint: Cell::default(),
            leftovers: RefCell::default(),
            locks: RefCell::default(),
        }
    }

    /// The outside world.
    pub fn host(&self) -> &H {
        &self.client.host
    }

    /// Record a log line.
    pub fn log(&self, level: Level, message: &str) {
        self.host().log(level, message);
    }

    /// Whether commands go through the Unix wrapper.
    pub fn is_unix(&self) -> bool {
        !self.instance.is_windows()
    }

    /// Run `command`, giving up (and cancelling it) after `timeout`.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<Output, Error> {
        if command.contains('\0') {
            return Err(Error::Unsupported(
                "commands cannot contain NUL bytes".into(),
            ));
        }
        let deadline = self.host().now() + timeout;
        let token = self.host().token();
        let stale = self.locks.borrow().clone();
        let script = if self.is_unix() {
            framing::wrap(command, &token, &stale)
        } else {
            command.to_string()
        };
        if script.len() > MAX_SCRIPT {
            return Err(Error::Unsupported(format!(
                "the command is {} bytes; SSM takes scripts of at most about {MAX_SCRIPT}",
                command.len()
            )));
        }
        let caller_secs = timeout.as_millis().div_ceil(1000) as u64;
        let job = Job {
            script,
            token: token.clone(),
            comment: format!("railbox {token}"),
            execution_timeout: self.config.execution_timeout.min(caller_secs.max(1)),
            idempotency: Idempotency::Once,
            in_working_directory: true,
        };
        let inv = match self.settle(&job, deadline, &self.hint) {
            Ok(inv) => inv,
            Err(Waited::Deadline) => {
                self.cleanup(vec![token]);
                return Err(Error::Timeout(format!(
                    "the command did not finish within {timeout:?} on {}; cancelled it",
                    self.instance.id
                )));
            }
            Err(Waited::Failed(e)) => {
                // The command may have run and left its directory; it is
                // removed with the session's next clean-up, not now, while
                // the service is failing.
                self.leftovers.borrow_mut().push(token);
                return Err(e);
            }
        };
        if let Err(e) = self.check_phase(&inv, job.execution_timeout) {
            if matches!(inv.phase(), Phase::ExecutionTimedOut | Phase::Cancelled) {
                self.cleanup(vec![token]);
            }
            return Err(e);
        }
        if !self.is_unix() {
            return Ok(self.raw_output(&inv));
        }
        if framing::status_line(&inv.standard_output_content, &token).is_some() {
            // The wrapper ran far enough to remove the stale locks.
            self.locks.borrow_mut().retain(|l| !stale.contains(l));
        }
        let readback_deadline = deadline.max(self.host().now()) + READBACK_GRACE;
        self.unwrap_output(&inv, &token, readback_deadline)
    }

    /// Turn a finished invocation's phase into an error unless it ran.
    fn check_phase(&self, inv: &Invocation, execution_timeout: u64) -> Result<(), Error> {
        let id = &self.instance.id;
        match inv.phase() {
            Phase::Success | Phase::Failed | Phase::Running => Ok(()),
            Phase::ExecutionTimedOut => Err(Error::Timeout(format!(
                "the command ran longer than its execution timeout of {execution_timeout} s on \
                 {id} and SSM stopped it (see the execution_timeout option)"
            ))),
            Phase::DeliveryTimedOut => Err(Error::Timeout(format!(
                "{id} did not pick up the command within delivery_timeout ({} s); its agent may \
                 be offline",
                self.config.delivery_timeout
            ))),
            Phase::Undeliverable => Err(Error::Io(format!(
                "SSM could not deliver the command to {id} (Undeliverable): its agent is offline \
                 or the instance is stopped"
            ))),
            Phase::Cancelled => Err(Error::Io(format!(
                "the command on {id} was cancelled by someone else"
            ))),
            Phase::Terminated => Err(Error::Io(format!(
                "{id} was terminated while the command ran"
            ))),
            Phase::InvalidPlatform => Err(Error::Unsupported(format!(
                "document {} does not run on {id}'s platform ({})",
                self.document, self.instance.platform
            ))),
            Phase::AccessDenied => Err(Error::Denied(format!(
                "{id} may not run document {} (AccessDenied)",
                self.document
            ))),
        }
    }

    /// Output of an unwrapped (PowerShell) command, as SSM returned it.
    ///
    /// Missing for Windows instances: a PowerShell wrapper like the Unix one,
    /// so that output past 24,000/8,000 characters and non-UTF-8 bytes come
    /// back whole, and a lock so that a command sent again after an
    /// ambiguous failure cannot run twice. Until then such output is cut (and
    /// a warning says so) and a resend relies on the listing alone.
    fn raw_output(&self, inv: &Invocation) -> Output {
        let out = &inv.standard_output_content;
        let err = &inv.standard_error_content;
        if framing::looks_truncated(out, framing::OUT_CAP)
            || framing::looks_truncated(err, framing::ERR_CAP)
        {
            self.log(
                Level::Warn,
                &format!(
                    "output of the command on {} may be cut at SSM's 24,000/8,000 characters; \
                     lossless output is implemented for Linux and macOS instances only",
                    self.instance.id
                ),
            );
        }
        Output {
            stdout: out.as_bytes().to_vec(),
            stderr: err.as_bytes().to_vec(),
            exit: inv.response_code as i32,
        }
    }

    /// Read a wrapped command's frame, and its output inline or back from files.
    fn unwrap_output(
        &self,
        inv: &Invocation,
        token: &str,
        deadline: Duration,
    ) -> Result<Output, Error> {
        let id = &self.instance.id;
        let stdout = &inv.standard_output_content;
        let Some((words, rest)) = framing::status_line(stdout, token) else {
            return Err(Error::Protocol(format!(
                "the command on {id} ended {} (ResponseCode {}) without railbox's frame; is \
                 document {} a shell-script document? stdout: {:?}; stderr: {:?}",
                inv.status,
                inv.response_code,
                self.document,
                excerpt(stdout),
                excerpt(&inv.standard_error_content)
            )));
        };
        let (exit, out, err) = match framing::parse_header(&words) {
            Some(Header::Run { exit, out, err }) => (exit, out, err),
            Some(Header::NoDir) => {
                return Err(Error::Io(format!(
                    "could not create a private directory in $TMPDIR or /tmp on {id}; the \
                     command did not run"
                )));
            }
            Some(Header::Dup) => {
                return Err(Error::Protocol(format!(
                    "the command arrived on {id} twice and both copies answered dup"
                )));
            }
            Some(Header::NoTools) => {
                return Err(Error::Unsupported(format!(
                    "{id} has neither base64 nor openssl, which lossless output needs; the \
                     command did not run"
                )));
            }
            None => {
                return Err(Error::Protocol(format!(
                    "malformed frame from {id}: {:?}",
                    words.join(" ")
                )));
            }
        };
        let files_kept = !(out.inline && err.inline);
        if !files_kept {
            self.keep_lock(token.to_string());
        }
        let stdout = self.inline_stream("stdout", &out, rest, files_kept)?;
        let stderr = self.inline_stream("stderr", &err, &inv.standard_error_content, files_kept)?;

        let mut need = Vec::new();
        if stdout.is_none() {
            need.push(("o", out.size));
        }
        if stderr.is_none() {
            need.push(("e", err.size));
        }
        let mut fetched = if need.is_empty() {
            Vec::new()
        } else {
            self.log(
                Level::Debug,
                &format!("reading back {need:?} bytes of output from {id}"),
            );
            let files = self.read_back(token, &need, deadline);
            self.cleanup(vec![token.to_string()]);
            files?
        }
        .into_iter();
        let stdout = match stdout {
            Some(bytes) => bytes,
            None => checked("stdout", fetched.next(), &out)?,
        };
        let stderr = match stderr {
            Some(bytes) => bytes,
            None => checked("stderr", fetched.next(), &err)?,
        };
        Ok(Output {
            stdout,
            stderr,
            exit,
        })
    }

    /// Decode an inline stream; `None` if it must be read back instead.
    fn inline_stream(
        &self,
        what: &str,
        stream: &Stream,
        text: &str,
        files_kept: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        if !stream.inline {
            return Ok(None);
        }
        let checked = framing::decode(text).and_then(|data| {
            framing::verify(what, &data, stream.size, stream.sha256.as_deref())?;
            Ok(data)
        });
        match checked {
            Ok(data) => Ok(Some(data)),
            Err(why) if files_kept => {
                self.log(
                    Level::Warn,
                    &format!("inline {what} did not check out ({why}); reading it back"),
                );
                Ok(None)
            }
            Err(why) => Err(Error::Protocol(format!(
                "output from {} did not check out: {why}",
                self.instance.id
            ))),
        }
    }

    /// Fetch whole files of a token's private directory.
    pub fn read_back(
        &self,
        token: &str,
        files: &[(&'static str, u64)],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.read_back_with(token, files, deadline, |_| {})
    }

    /// Fetch whole files, calling `progress` with the bytes received so far.
    pub fn read_back_with(
        &self,
        token: &str,
        files: &[(&'static str, u64)],
        deadline: Duration,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<Vec<u8>>, Error> {
        let steps = framing::plan_reads(files);
        let mut buffers: Vec<Vec<u8>> = files.iter().map(|(_, s)| vec![0; *s as usize]).collect();
        let index = |name: &str| files.iter().position(|(f, _)| *f == name).unwrap_or(0);
        let jobs: Vec<Job> = steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let script = framing::read_script(token, step);
                Job::helper(script, token, &format!("read {i}"))
            })
            .collect();
        let mut done = 0u64;
        self.exec_many(&jobs, deadline, |i, inv| {
            let step = &steps[i];
            if let Some((words, _)) = framing::status_line(&inv.standard_output_content, token) {
                return Err(Error::Protocol(format!(
                    "reading output back from {}: {}",
                    self.instance.id,
                    words.join(" ")
                )));
            }
            if inv.phase() != Phase::Success {
                return Ok(Verdict::Retry(format!("read-back ended {}", inv.status)));
            }
            let channels = [
                (step.out, &inv.standard_output_content),
                (step.err, &inv.standard_error_content),
            ];
            for (segment, text) in channels {
                let Some(segment) = segment else { continue };
                let placed = framing::decode(text).and_then(|data| {
                    framing::place(&mut buffers[index(segment.file)], &segment, &data)
                });
                if let Err(why) = placed {
                    return Ok(Verdict::Retry(why));
                }
                done += segment.len;
            }
            progress(done);
            Ok(Verdict::Done)
        })?;
        Ok(buffers)
    }

    /// Remove private directories on the instance without waiting for it;
    /// what cannot be sent now is tried again when the session closes.
    pub fn cleanup(&self, mut tokens: Vec<String>) {
        if !self.is_unix() {
            return;
        }
        tokens.append(&mut self.leftovers.borrow_mut());
        if tokens.is_empty() {
            return;
        }
        let job = Job::helper(framing::cleanup(&tokens), &tokens[0], "cleanup");
        let deadline = self.host().now() + Duration::from_secs(20);
        if let Err(e) = self.send(&job, deadline) {
            self.log(
                Level::Warn,
                &format!("could not clean up on {}: {e}", self.instance.id),
            );
            self.leftovers.borrow_mut().extend(tokens);
        }
    }

    /// Clean up what earlier failures left behind.
    pub fn close(&self) {
        let locks = self.locks.take();
        self.cleanup(locks);
    }

    /// Remember an empty lock directory to remove later.
    pub fn keep_lock(&self, name: String) {
        self.locks.borrow_mut().push(name);
    }

    /// Turn a failed call into a user-facing error naming the action.
    pub fn call_error(&self, action: &str, e: CallError) -> Error {
        let id = &self.instance.id;
        match e {
            CallError::Denied(m) => Error::Denied(format!("{action} for {id}: {m}")),
            CallError::Deadline(m) => Error::Timeout(format!("{action} for {id}: {m}")),
            CallError::Net(m) | CallError::Ambiguous(m) => {
                Error::Io(format!("{action} for {id}: {m}"))
            }
            CallError::Service(s) if s.is("InvalidInstanceId") => Error::NotFound(format!(
                "{action}: SSM does not know instance {id} or it is not running ({s})"
            )),
            CallError::Service(s) => Error::Protocol(format!("{action} for {id}: {s}")),
        }
    }
}

/// Check read-back bytes against their header.
fn checked(what: &str, data: Option<Vec<u8>>, stream: &Stream) -> Result<Vec<u8>, Error> {
    let data = data.unwrap_or_default();
    framing::verify(what, &data, stream.size, stream.sha256.as_deref())
        .map_err(|why| Error::Protocol(format!("read-back output did not check out: {why}")))?;
    Ok(data)
}

/// The start of a text, for messages.
fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}
