//! A fake SSM service and clock for native tests.
//!
//! It runs each SendCommand script with the local `sh`, as the agent would,
//! then applies the service's output limits (the agent's 24,000-byte cut with
//! its marker, the 8,000-character stderr cap, U+FFFD for invalid UTF-8), so
//! the wrapper, read-back and file scripts are tested for real. Time is
//! virtual: sleeping advances it. Faults are queued per action.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{Host, Level, NetError, NetFailure, Reply};

/// A fault the fake injects into the next matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 ThrottlingException, request not processed.
    Throttle,
    /// 500 InternalServerError, request not processed.
    Status500,
    /// 500 InternalServerError after processing the request.
    Status500After,
    /// Connection refused: nothing was sent.
    Refused,
    /// Connection reset after the request was processed.
    ResetAfter,
    /// 403 InvalidSignatureException.
    BadSignature,
}

/// A command the fake received.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub id: String,
    pub comment: String,
    pub script: String,
    pub execution_timeout: String,
    pub delivery_timeout: u64,
    pub stdout: String,
    pub stderr: String,
    pub code: i64,
    pub sent_at: Duration,
    pub done_at: Duration,
    pub cancelled: bool,
    pub polls: u32,
    pub forced: Option<(&'static str, &'static str)>,
}

/// A managed instance the fake knows.
#[derive(Debug, Clone)]
pub struct FakeInstance {
    pub id: String,
    pub ping: String,
    pub platform: String,
    pub ip: String,
    pub name: String,
}

#[derive(Default)]
struct State {
    now: Duration,
    rng: u64,
    tokens: u64,
    calls: Vec<String>,
    faults: VecDeque<(&'static str, Option<usize>, Fault)>,
    commands: Vec<Cmd>,
    instances: Vec<FakeInstance>,
    invisible_polls: u32,
    list_hidden_for: Duration,
    run_time: Duration,
    hang: bool,
    next_status: Option<(&'static str, &'static str)>,
    logs: Vec<String>,
    progress: Vec<(String, u64, u64)>,
}

/// The fake service, clock and host.
pub struct Fake {
    state: RefCell<State>,
    /// `TMPDIR` of the scripts, unique per fake.
    pub tmp: PathBuf,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

const WALL_BASE_MS: i64 = 1_700_000_000_000;

impl Fake {
    /// A fake with three Online Linux instances and its own temporary directory.
    pub fn new() -> Fake {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let tmp =
            std::env::temp_dir().join(format!("railbox-awsssm-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let instance = |i: u32, ping: &str, platform: &str, name: &str| FakeInstance {
            id: format!("i-0000000000000000{i}"),
            ping: ping.into(),
            platform: platform.into(),
            ip: format!("10.0.0.{i}"),
            name: name.into(),
        };
        let state = State {
            rng: 0x9e37_79b9_7f4a_7c15,
            instances: vec![
                instance(1, "Online", "Linux", "web"),
                instance(2, "ConnectionLost", "Linux", "db"),
                instance(3, "Online", "Windows", "win"),
                instance(4, "Online", "Linux", "twin"),
                instance(5, "Online", "Linux", "twin"),
            ],
            ..State::default()
        };
        Fake {
            state: RefCell::new(state),
            tmp,
        }
    }

    /// Queue a fault for the next call of `action` (short name, or `*`).
    pub fn fault(&self, action: &'static str, fault: Fault) {
        self.state
            .borrow_mut()
            .faults
            .push_back((action, None, fault));
    }

    /// Inject a fault into the `nth` call (1-based) of `action`.
    pub fn fault_on(&self, action: &'static str, nth: usize, fault: Fault) {
        self.state
            .borrow_mut()
            .faults
            .push_back((action, Some(nth), fault));
    }

    /// GetCommandInvocation answers InvocationDoesNotExist this many times per command.
    pub fn invisible_polls(&self, n: u32) {
        self.state.borrow_mut().invisible_polls = n;
    }

    /// ListCommandInvocations shows a command only this long after it was sent.
    pub fn hide_list_for(&self, d: Duration) {
        self.state.borrow_mut().list_hidden_for = d;
    }

    /// Commands finish this long after they are sent.
    pub fn run_time(&self, d: Duration) {
        self.state.borrow_mut().run_time = d;
    }

    /// Commands never finish.
    pub fn hang(&self) {
        self.state.borrow_mut().hang = true;
    }

    /// The next command ends with this Status and StatusDetails, unrun.
    pub fn next_status(&self, status: &'static str, details: &'static str) {
        self.state.borrow_mut().next_status = Some((status, details));
    }

    /// Short names of the actions called so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.borrow().calls.clone()
    }

    /// How many calls of `action` were made.
    pub fn count(&self, action: &str) -> usize {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| *c == action)
            .count()
    }

    /// Forget the calls so far.
    pub fn reset_calls(&self) {
        self.state.borrow_mut().calls.clear();
    }

    /// The commands received so far.
    pub fn commands(&self) -> Vec<Cmd> {
        self.state.borrow().commands.clone()
    }

    /// Progress reports so far.
    pub fn progress_reports(&self) -> Vec<(String, u64, u64)> {
        self.state.borrow().progress.clone()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.state.borrow().logs.clone()
    }

    /// Entries left in the scripts' temporary directory.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("railbox."))
            .collect()
    }

    fn handle(&self, action: &str, body: &Value) -> Reply {
        match action {
            "SendCommand" => self.send_command(body),
            "GetCommandInvocation" => self.get_invocation(body),
            "ListCommandInvocations" => self.list_invocations(body),
            "CancelCommand" => {
                let id = body["CommandId"].as_str().unwrap_or_default();
                let mut s = self.state.borrow_mut();
                match s.commands.iter_mut().find(|c| c.id == id) {
                    Some(c) => {
                        c.cancelled = true;
                        ok(json!({}))
                    }
                    None => error(400, "InvalidCommandId", ""),
                }
            }
            "DescribeInstanceInformation" => self.describe(body),
            _ => error(400, "UnknownOperationException", action),
        }
    }

    fn send_command(&self, body: &Value) -> Reply {
        let script = body["Parameters"]["commands"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dir = body["Parameters"]["workingDirectory"][0]
            .as_str()
            .map(PathBuf::from);
        let comment = body["Comment"].as_str().unwrap_or_default().to_string();
        let execution_timeout = body["Parameters"]["executionTimeout"][0].as_str();
        let execution_timeout = execution_timeout.unwrap_or_default().to_string();
        let delivery_timeout = body["TimeoutSeconds"].as_u64().unwrap_or_default();
        let (hang, forced, run_time, now) = {
            let mut s = self.state.borrow_mut();
            (s.hang, s.next_status.take(), s.run_time, s.now)
        };
        let (stdout, stderr, code) = if hang || forced.is_some() {
            (String::new(), String::new(), -1)
        } else {
            self.execute(&script, dir.as_deref().unwrap_or(&self.tmp))
        };
        let mut s = self.state.borrow_mut();
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            s.commands.len(),
            s.commands.len()
        );
        s.commands.push(Cmd {
            id: id.clone(),
            comment,
            script,
            execution_timeout,
            delivery_timeout,
            stdout,
            stderr,
            code,
            sent_at: now,
            done_at: if hang { Duration::MAX } else { now + run_time },
            cancelled: false,
            polls: 0,
            forced,
        });
        ok(json!({"Command": {"CommandId": id, "Status": "Pending"}}))
    }

    /// Run a script as the agent does and cut its output as SSM does.
    fn execute(&self, script: &str, dir: &Path) -> (String, String, i64) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let cut = |mut bytes: Vec<u8>| {
            if bytes.len() > 24_000 {
                bytes.truncate(24_000 - 20);
                bytes.extend_from_slice(b"--output truncated--");
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let code = out.status.code().unwrap_or(137);
        let mut stderr = out.stderr;
        if code != 0 {
            // The agent reports a failed script on stderr in a line of its own.
            if stderr.last().is_some_and(|&b| b != b'\n') {
                stderr.push(b'\n');
            }
            stderr.extend_from_slice(
                format!("failed to run commands: exit status {code}\n").as_bytes(),
            );
        }
        let stderr: String = cut(stderr).chars().take(8_000).collect();
        (cut(out.stdout), stderr, i64::from(code))
    }

    fn get_invocation(&self, body: &Value) -> Reply {
        let id = body["CommandId"].as_str().unwrap_or_default();
        let mut s = self.state.borrow_mut();
        let (invisible, now) = (s.invisible_polls, s.now);
        let Some(c) = s.commands.iter_mut().find(|c| c.id == id) else {
            return error(400, "InvocationDoesNotExist", "");
        };
        c.polls += 1;
        if c.polls <= invisible {
            return error(400, "InvocationDoesNotExist", "");
        }
        let end = format_ms(WALL_BASE_MS + c.done_at.min(now).as_millis() as i64);
        let (status, details, code, out, err) = if c.cancelled {
            ("Cancelled", "Cancelled", 137, "", "")
        } else if let Some((status, details)) = c.forced {
            (status, details, -1, "", "")
        } else if now < c.done_at {
            ("InProgress", "InProgress", -1, "", "")
        } else {
            let status = if c.code == 0 { "Success" } else { "Failed" };
            (status, status, c.code, c.stdout.as_str(), c.stderr.as_str())
        };
        ok(json!({
            "CommandId": c.id, "InstanceId": body["InstanceId"], "Status": status,
            "StatusDetails": details, "ResponseCode": code, "StandardOutputContent": out,
            "StandardErrorContent": err, "ExecutionEndDateTime": end,
        }))
    }

    fn list_invocations(&self, _body: &Value) -> Reply {
        let s = self.state.borrow();
        let list: Vec<Value> = s
            .commands
            .iter()
            .rev()
            .filter(|c| c.sent_at + s.list_hidden_for <= s.now)
            .map(|c| json!({"CommandId": c.id, "Comment": c.comment}))
            .collect();
        ok(json!({ "CommandInvocations": list }))
    }

    fn describe(&self, body: &Value) -> Reply {
        let s = self.state.borrow();
        let filter = body["Filters"][0].clone();
        let key = filter["Key"].as_str().unwrap_or_default();
        let value = filter["Values"][0].as_str().unwrap_or_default();
        let all: Vec<&FakeInstance> = s
            .instances
            .iter()
            .filter(|i| match key {
                "InstanceIds" => i.id == value,
                "tag:Name" => i.name == value,
                _ => true,
            })
            .collect();
        // Pages of two, so address lookups page.
        let start: usize = body["NextToken"].as_str().map_or(0, |t| t.parse().unwrap());
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(2)
            .map(|i| {
                json!({"InstanceId": i.id, "PingStatus": i.ping, "PlatformType": i.platform,
                       "IPAddress": i.ip, "ComputerName": i.name})
            })
            .collect();
        let mut answer = json!({ "InstanceInformationList": page });
        if start + 2 < all.len() {
            answer["NextToken"] = json!((start + 2).to_string());
        }
        ok(answer)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn ok(value: Value) -> Reply {
    Reply {
        status: 200,
        error_type: None,
        body: serde_json::to_vec(&value).unwrap(),
    }
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        error_type: None,
        body: serde_json::to_vec(&json!({"__type": code, "message": message})).unwrap(),
    }
}

fn format_ms(ms: i64) -> String {
    let base = crate::poll::format_iso8601(ms);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

impl Host for Fake {
    fn post(&self, action: &str, body: &[u8]) -> Result<Reply, NetError> {
        let short = action.trim_start_matches("AmazonSSM.").to_string();
        let value: Value = serde_json::from_slice(body).expect("requests are JSON");
        let fault = {
            let mut s = self.state.borrow_mut();
            s.calls.push(short.clone());
            s.now += Duration::from_millis(2);
            let nth = s.calls.iter().filter(|c| **c == short).count();
            let i = s
                .faults
                .iter()
                .position(|(a, n, _)| (*a == short || *a == "*") && n.is_none_or(|n| n == nth));
            i.and_then(|i| s.faults.remove(i)).map(|(_, _, f)| f)
        };
        match fault {
            None => Ok(self.handle(&short, &value)),
            Some(Fault::Throttle) => Ok(error(400, "ThrottlingException", "Rate exceeded")),
            Some(Fault::Status500) => Ok(error(500, "InternalServerError", "")),
            Some(Fault::BadSignature) => Ok(error(403, "InvalidSignatureException", "bad sig")),
            Some(Fault::Refused) => Err(NetError {
                kind: NetFailure::NotSent,
                detail: "ConnectionRefused".into(),
            }),
            Some(Fault::Status500After) => {
                self.handle(&short, &value);
                Ok(error(500, "InternalServerError", ""))
            }
            Some(Fault::ResetAfter) => {
                self.handle(&short, &value);
                Err(NetError {
                    kind: NetFailure::Ambiguous,
                    detail: "ConnectionTerminated".into(),
                })
            }
        }
    }

    fn now(&self) -> Duration {
        self.state.borrow().now
    }

    fn wall_ms(&self) -> i64 {
        WALL_BASE_MS + self.now().as_millis() as i64
    }

    fn sleep(&self, d: Duration) {
        self.state.borrow_mut().now += d;
    }

    fn random(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        s.rng ^= s.rng << 13;
        s.rng ^= s.rng >> 7;
        s.rng ^= s.rng << 17;
        s.rng
    }

    fn token(&self) -> String {
        let mut s = self.state.borrow_mut();
        s.tokens += 1;
        format!("{:032x}", s.tokens.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn log(&self, level: Level, message: &str) {
        self.state
            .borrow_mut()
            .logs
            .push(format!("{level:?}: {message}"));
    }

    fn progress(&self, operation: &str, done: u64, total: u64) {
        self.state
            .borrow_mut()
            .progress
            .push((operation.to_string(), done, total));
    }
}
