//! Unit tests against a scripted console: a getty and a shell that speak
//! just enough of the transport's lines to check login, framing and
//! recovery without a VM. The real console is tested end to end in the
//! host's suite.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::link::{Level, Link};
use crate::options::{Config, Value, defaults};
use crate::shell::Shell;

/// What the scripted shell answers to a user's command.
type Answer = fn(&str) -> (Vec<u8>, Vec<u8>, i32);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Login,
    Password,
    Shell,
}

struct State {
    outgoing: VecDeque<u8>,
    typed: Vec<u8>,
    plain_writes: Vec<u8>,
    nonce: u64,
    mode: Mode,
    user: String,
    password: &'static str,
    /// The console keeps turning `\n` into `\r\n` (its stty cannot).
    crlf: bool,
    answer: Answer,
    /// Commands containing this never finish until ^C.
    hang_on: Option<&'static str>,
    commands: Vec<String>,
    logins: usize,
}

#[derive(Clone)]
struct Fake(Rc<RefCell<State>>);

impl Fake {
    fn new(mode: Mode, banner: &str, answer: Answer) -> Fake {
        let state = State {
            outgoing: banner.bytes().collect(),
            typed: Vec::new(),
            plain_writes: Vec::new(),
            nonce: 0,
            mode,
            user: String::new(),
            password: "right",
            crlf: false,
            answer,
            hang_on: None,
            commands: Vec::new(),
            logins: 0,
        };
        Fake(Rc::new(RefCell::new(state)))
    }

    fn state(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }
}

impl State {
    fn say(&mut self, text: &[u8]) {
        for &b in text {
            if b == b'\n' && self.crlf {
                self.outgoing.push_back(b'\r');
            }
            self.outgoing.push_back(b);
        }
    }

    fn key(&mut self, b: u8) {
        match b {
            0x03 => {
                self.typed.clear();
                self.say(b"^C\n");
            }
            0x15 => self.typed.clear(),
            b'\r' | b'\n' => {
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.typed)).into_owned();
                self.line(&line);
            }
            b => self.typed.push(b),
        }
    }

    fn line(&mut self, line: &str) {
        match self.mode {
            Mode::Login if line.is_empty() => self.say(b"\nvm login: "),
            Mode::Login => {
                self.user = line.to_string();
                self.mode = Mode::Password;
                self.say(b"Password: ");
            }
            Mode::Password => {
                if line == format!("<secret:{}>", self.password) {
                    self.logins += 1;
                    self.mode = Mode::Shell;
                    self.say(b"\nWelcome; you have mail. # not a prompt yet\n~ # \x1b[6n");
                } else {
                    self.mode = Mode::Login;
                    self.say(b"\nLogin incorrect\nvm login: ");
                }
            }
            Mode::Shell => self.shell(line),
        }
    }

    fn shell(&mut self, line: &str) {
        if let Some(nonce) = line.split("RBXS ").nth(1) {
            self.say(format!("RBXS_{nonce}\n").as_bytes());
            return;
        }
        let Some(rest) = line.strip_prefix("printf '%s_%s\\n' RBXB ") else {
            self.say(b"-sh: not found\n~ # ");
            return;
        };
        let (nonce, body) = rest.split_once("; ").expect("a framed line");
        let (stdout, stderr, status) =
            if let Some(encoded) = body.split("eval \"$(printf %s ").nth(1) {
                let encoded = encoded.split(' ').next().unwrap();
                let command = String::from_utf8(B64.decode(encoded).unwrap()).unwrap();
                self.commands.push(command.clone());
                if self.hang_on.is_some_and(|h| command.contains(h)) {
                    self.say(format!("RBXB_{nonce}\n").as_bytes());
                    return;
                }
                (self.answer)(&command)
            } else if body.contains("mktemp") {
                (
                    b"/tmp/railbox.abc123\nbase64 gzip gunzip sha256sum head dd tr ".to_vec(),
                    Vec::new(),
                    0,
                )
            } else {
                (Vec::new(), Vec::new(), 0)
            };
        let mut out = format!("RBXB_{nonce}\n").into_bytes();
        out.extend_from_slice(&stdout);
        out.extend_from_slice(format!("\nRBXE_{nonce}_{status}\n").as_bytes());
        if body.contains("RBXF") {
            out.extend_from_slice(&stderr);
            out.extend_from_slice(format!("\nRBXF_{nonce}\n").as_bytes());
        }
        self.say(&out);
    }
}

impl Link for Fake {
    fn read(&self, max: u32, _wait: Duration) -> Result<Vec<u8>, Error> {
        let mut s = self.state();
        let n = s.outgoing.len().min(max as usize);
        Ok(s.outgoing.drain(..n).collect())
    }

    fn write(&self, data: &[u8]) -> Result<(), Error> {
        let mut s = self.state();
        s.plain_writes.extend_from_slice(data);
        for &b in data {
            s.key(b);
        }
        Ok(())
    }

    fn write_secret(&self, name: &str) -> Result<(), Error> {
        let mut s = self.state();
        assert_eq!(name, "password");
        let typed = "<secret:right>".to_string();
        s.typed.extend_from_slice(typed.as_bytes());
        Ok(())
    }

    fn log(&self, _level: Level, _message: &str) {}

    fn progress(&self, _operation: &str, _done: u64, _total: u64) {}

    fn nonce(&self) -> String {
        let mut s = self.state();
        s.nonce += 1;
        format!("{:016x}", s.nonce)
    }
}

fn config(password: bool) -> Config {
    let mut options = defaults();
    options.retain(|(n, _)| n != "login_timeout");
    options.push(("login_timeout".into(), Value::Integer(5)));
    if password {
        options.push(("password".into(), Value::Secret));
    }
    Config::from_options(&options, None).unwrap()
}

fn echo_back(command: &str) -> (Vec<u8>, Vec<u8>, i32) {
    match command {
        "fake markers" => (
            b"RBXE_0000000000000009_0\nRBXB_1\nRBXS_2".to_vec(),
            Vec::new(),
            0,
        ),
        "fail" => (Vec::new(), b"it broke\n".to_vec(), 7),
        "flood" => (vec![b'x'; 25 << 20], Vec::new(), 0),
        other => (format!("ran: {other}\n").into_bytes(), Vec::new(), 0),
    }
}

#[test]
fn logs_in_past_a_banner_with_the_secret_the_host_writes() {
    let fake = Fake::new(
        Mode::Login,
        "Debian GNU/Linux 12 ttyS0\nLast login: never\n\nvm login: ",
        echo_back,
    );
    let mut shell = Shell::open(fake.clone(), config(true)).expect("login");
    let out = shell.run("uname -a", Duration::from_secs(5)).expect("run");
    assert_eq!(out.stdout, b"ran: uname -a\n");
    assert_eq!(fake.state().user, "root");
    assert_eq!(fake.state().logins, 1);
    shell.close().unwrap();
    let written = String::from_utf8_lossy(&fake.state().plain_writes).into_owned();
    assert!(
        written.ends_with("exit\n"),
        "the session logs out: {written:?}"
    );
    assert!(
        !written.contains("right"),
        "the password never passes through the transport"
    );
}

#[test]
fn a_wrong_password_is_denied_not_retried() {
    let fake = Fake::new(Mode::Login, "vm login: ", echo_back);
    fake.state().password = "other";
    let err = Shell::open(fake.clone(), config(true))
        .err()
        .expect("refused");
    assert!(
        matches!(&err, Error::Denied(m) if m == "the console refused the password for root"),
        "{err:?}"
    );
    assert_eq!(fake.state().user, "root");
}

#[test]
fn a_password_prompt_without_a_password_says_which_option() {
    let fake = Fake::new(Mode::Login, "vm login: ", echo_back);
    let err = Shell::open(fake, config(false)).err().expect("refused");
    assert!(
        crate::message(&err).contains("give it with the password option"),
        "{err:?}"
    );
}

#[test]
fn an_open_shell_is_taken_over_without_logging_in_or_out() {
    let fake = Fake::new(Mode::Shell, "", echo_back);
    let mut shell = Shell::open(fake.clone(), config(false)).expect("shell");
    assert_eq!(fake.state().logins, 0);
    shell.close().unwrap();
    let written = String::from_utf8_lossy(&fake.state().plain_writes).into_owned();
    assert!(!written.contains("exit\n"), "a shell found open stays open");
}

#[test]
fn marker_shaped_output_stderr_and_status_arrive_apart() {
    let fake = Fake::new(Mode::Shell, "~ # ", echo_back);
    let mut shell = Shell::open(fake, config(false)).expect("shell");
    let out = shell.run("fake markers", Duration::from_secs(5)).unwrap();
    assert_eq!(out.stdout, b"RBXE_0000000000000009_0\nRBXB_1\nRBXS_2");
    assert_eq!(out.exit, 0);
    let out = shell.run("fail", Duration::from_secs(5)).unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit),
        (&b""[..], &b"it broke\n"[..], 7)
    );
}

#[test]
fn a_console_that_keeps_crlf_still_gives_plain_newlines() {
    let fake = Fake::new(Mode::Shell, "", echo_back);
    fake.state().crlf = true;
    let mut shell = Shell::open(fake, config(false)).expect("shell");
    let out = shell.run("two\nlines", Duration::from_secs(5)).unwrap();
    assert_eq!(out.stdout, b"ran: two\nlines\n");
}

#[test]
fn a_hung_command_is_interrupted_and_the_next_one_runs() {
    let fake = Fake::new(Mode::Shell, "", echo_back);
    fake.state().hang_on = Some("sleep");
    let mut shell = Shell::open(fake.clone(), config(false)).expect("shell");
    let err = shell
        .run("sleep 100", Duration::from_millis(300))
        .err()
        .expect("timeout");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(fake.state().plain_writes.contains(&0x03), "^C was sent");
    let out = shell.run("echo next", Duration::from_secs(5)).unwrap();
    assert_eq!(out.stdout, b"ran: echo next\n");
    assert_eq!(fake.state().commands, ["sleep 100", "echo next"]);
}

#[test]
fn console_text_is_matched_without_escapes() {
    use crate::console::{last_line, visible};
    assert_eq!(last_line(b"motd\r\n~ # \x1b[6n"), "~ # ");
    assert_eq!(visible(b"\x1b]0;title\x07a\x1b[1;32mb\x1b[0m\r\n"), "ab\n");
}

#[test]
fn chunks_are_comment_lines_and_compress_only_when_it_pays() {
    use crate::transfer::{chunk_lines, decode_chunk, maybe_compress};
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (lines, count) = chunk_lines(&data);
    assert_eq!(count, 4);
    assert!(
        lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| l[0] == b'#' && l.len() <= 1025)
    );
    let text: Vec<u8> = lines.iter().copied().filter(|&b| b != b'#').collect();
    assert_eq!(decode_chunk(&text, false).unwrap(), data);

    let repetitive = b"the same line again\n".repeat(500);
    let packed = maybe_compress(&repetitive).expect("text compresses");
    assert!(packed.len() < repetitive.len() / 10);
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    assert!(maybe_compress(&noise).is_none(), "noise is sent as it is");
}

#[test]
fn output_past_the_buffer_limit_is_an_error_not_a_crash() {
    let fake = Fake::new(Mode::Shell, "", echo_back);
    let mut shell = Shell::open(fake, config(false)).expect("shell");
    let err = shell
        .run("flood", Duration::from_secs(30))
        .err()
        .expect("too much");
    assert!(crate::message(&err).contains("more than 24 MiB"), "{err:?}");
}
