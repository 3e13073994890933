//! The shell session on the console: preparing it, framing commands with
//! markers that carry the exit status, interrupting a command that runs too
//! long, and putting the shell back as it was on close.
//!
//! Each command line starts and ends with markers built from a fresh random
//! nonce. The shell prints them with `printf '%s_%s'`, so the marker is never
//! in the line itself, and text that merely looks like a marker (another
//! nonce) is output like any other. The command runs in a subshell with
//! stdin from `/dev/null`, so it cannot read the lines that follow, and it
//! travels base64-encoded, so quotes, newlines and control characters reach
//! the shell unchanged. A tty has one output stream: stderr is sent to a
//! file in the session's private directory and printed after the exit
//! status, so the two arrive apart.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::console::Console;
use crate::link::{Level, Link};
use crate::login::{self, Reached};
use crate::options::Config;

/// Longest base64 text of a command sent inline; a canonical-mode tty
/// takes lines of up to 4095 bytes, and the framing needs the rest.
const MAX_INLINE: usize = 3000;

/// Extra time for the parts of a command line around the command itself.
const GRACE: Duration = Duration::from_secs(30);

/// How long the shell has to answer after each interrupt.
const RECOVER_WAIT: Duration = Duration::from_secs(5);

/// Tools on the target that transfers and framing can use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// `base64`, to decode commands and file chunks.
    pub base64: bool,
    /// `gzip`, to compress downloads.
    pub gzip: bool,
    /// `gunzip`, to decompress uploads.
    pub gunzip: bool,
    /// `sha256sum`, to check chunks.
    pub sha256sum: bool,
    /// `head`, to read a chunk's lines.
    pub head: bool,
    /// `dd`, to read a file in chunks.
    pub dd: bool,
    /// `tr`, to strip a chunk's line prefixes.
    pub tr: bool,
}

impl Tools {
    fn parse(list: &str) -> Tools {
        let has = |name: &str| list.split_whitespace().any(|t| t == name);
        Tools {
            base64: has("base64"),
            gzip: has("gzip"),
            gunzip: has("gunzip"),
            sha256sum: has("sha256sum"),
            head: has("head"),
            dd: has("dd"),
            tr: has("tr"),
        }
    }
}

/// What an internal line printed and its status.
pub struct Raw {
    /// Standard output (and error, where the line merges it).
    pub out: Vec<u8>,
    /// Exit status.
    pub status: i32,
}

/// The result of a user's command.
pub struct Output {
    /// Standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Standard error, or empty where the console had no private directory
    /// and stderr was merged into stdout.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub exit: i32,
}

/// An open shell on the console.
pub struct Shell<L> {
    pub(crate) con: Console<L>,
    pub(crate) config: Config,
    pub(crate) tools: Tools,
    /// Whether `$RBXD` names a private directory on the target.
    pub(crate) private_dir: bool,
    reached: Reached,
    /// Whether the user's setup commands ran, so teardown should.
    set_up: bool,
    /// Why the console can no longer be used, once that happens.
    broken: Option<String>,
}

impl<L: Link> Shell<L> {
    /// Reach a shell on the console behind `link` and prepare it.
    pub fn open(link: L, config: Config) -> Result<Shell<L>, Error> {
        let mut con = Console::new(link);
        let deadline = Instant::now() + config.login_timeout;
        let reached = login::reach_shell(&mut con, &config, deadline)?;
        let mut shell = Shell {
            con,
            config,
            tools: Tools::default(),
            private_dir: false,
            reached,
            set_up: false,
            broken: None,
        };
        if let Err(e) = shell.prepare(deadline + GRACE) {
            // Put the console back (and log out) before reporting.
            let _ = shell.close();
            return Err(e);
        }
        Ok(shell)
    }

    /// Clear the prompts, make a private directory, find the tools, quiet
    /// the kernel and run the user's setup commands.
    fn prepare(&mut self, deadline: Instant) -> Result<(), Error> {
        let raw = self.exec_raw(
            "[ -n \"${RBXPS1+x}\" ] || { RBXPS1=$PS1; RBXPS2=$PS2; }; PS1=''; PS2=''; \
             RBXD=$(mktemp -d /tmp/railbox.XXXXXX 2>/dev/null) || RBXD=''; printf '%s\\n' \"$RBXD\"; \
             for c in base64 gzip gunzip sha256sum head dd tr; do \
             command -v $c >/dev/null 2>&1 && printf '%s ' $c; done",
            deadline,
        )?;
        let text = String::from_utf8_lossy(&raw.out).into_owned();
        let mut lines = text.lines();
        self.private_dir = lines.next().is_some_and(|d| !d.trim().is_empty());
        self.tools = Tools::parse(lines.next().unwrap_or(""));
        self.con.link.log(
            Level::Debug,
            &format!(
                "console shell ready (crlf: {}, private directory: {}, tools: {:?})",
                self.con.crlf(),
                self.private_dir,
                self.tools
            ),
        );
        if !self.private_dir {
            self.con.link.log(
                Level::Warn,
                "the console has no writable /tmp: stderr arrives merged into stdout",
            );
        }
        if self.config.quiet_kernel {
            let quiet = self.exec_raw(
                "[ -w /proc/sys/kernel/printk ] && { [ -n \"$RBXK\" ] || read RBXK _ < /proc/sys/kernel/printk; \
                 echo 1 > /proc/sys/kernel/printk; }",
                deadline,
            )?;
            if quiet.status != 0 {
                self.con.link.log(
                    Level::Info,
                    "cannot quiet the kernel on this console: its messages may mix with command output",
                );
            }
        }
        if let Some(setup) = self.config.setup.clone() {
            let body = self.eval_body(&setup, "setup")?;
            let raw = self.exec_raw(&format!("{{ {body}; }} 2>&1"), deadline)?;
            if raw.status != 0 {
                return Err(Error::InvalidTarget(format!(
                    "the setup commands failed with status {}: {}",
                    raw.status,
                    String::from_utf8_lossy(&raw.out).trim()
                )));
            }
        }
        self.set_up = true;
        Ok(())
    }

    /// Run a user's command, giving up after `timeout`.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<Output, Error> {
        self.usable()?;
        let started = Instant::now();
        let deadline = started + timeout;
        let body = if B64.encode(command).len() > MAX_INLINE && self.private_dir {
            self.put_private("cmd", command.as_bytes(), deadline)?;
            ". \"$RBXD/cmd\"".to_string()
        } else {
            self.eval_body(command, "the command")?
        };
        let nonce = self.con.link.nonce();
        let (redirect, stderr_part) = if self.private_dir {
            (
                "2>\"$RBXD/err\"".to_string(),
                format!(
                    "; cat \"$RBXD/err\" 2>/dev/null; rm -f \"$RBXD/err\"; printf '\\n%s_%s\\n' RBXF {nonce}"
                ),
            )
        } else {
            ("2>&1".to_string(), String::new())
        };
        let line = format!(
            "printf '%s_%s\\n' RBXB {nonce}; ( {body} ) </dev/null {redirect}; \
             printf '\\n%s_%s_%s\\n' RBXE {nonce} \"$?\"{stderr_part}\n"
        );
        self.con.send(line.as_bytes())?;
        let stdout = match self.read_output(&nonce, deadline) {
            Ok(out) => out,
            Err(Error::Timeout(_)) => {
                self.recover()?;
                return Err(Error::Timeout(format!(
                    "the command did not finish within {:.1} s; it was interrupted and the console is ready again",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(self.fail(e)),
        };
        let tail = Instant::now() + GRACE;
        let exit = self.read_status(tail).map_err(|e| self.fail(e))?;
        let stderr = if self.private_dir {
            self.con
                .take_until(
                    format!("\nRBXF_{nonce}\n").as_bytes(),
                    tail,
                    "end of stderr",
                )
                .map_err(|e| self.fail(e))?
        } else {
            Vec::new()
        };
        Ok(Output {
            stdout,
            stderr,
            exit,
        })
    }

    /// The shell text that runs `text`: decoded from base64 when the target
    /// has it, else the text itself if it is one printable line.
    pub(crate) fn eval_body(&self, text: &str, what: &str) -> Result<String, Error> {
        let encoded = B64.encode(text);
        if self.tools.base64 && encoded.len() <= MAX_INLINE {
            return Ok(format!("eval \"$(printf %s {encoded} | base64 -d)\""));
        }
        if self.tools.base64 {
            return Err(Error::Unsupported(format!(
                "{what} is {} bytes; this console has no private directory to hold a script that long",
                text.len()
            )));
        }
        if text.len() > MAX_INLINE || text.chars().any(|c| c.is_control()) {
            return Err(Error::Unsupported(format!(
                "this console has no base64, so {what} must be one line of printable text of at most \
                 {MAX_INLINE} bytes"
            )));
        }
        Ok(text.to_string())
    }

    /// Run one line of ours in the session's shell (no subshell, so it may
    /// set variables), followed by `data`, and return what it printed.
    pub(crate) fn exec_raw_with(
        &mut self,
        body: &str,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Raw, Error> {
        self.usable()?;
        let nonce = self.con.link.nonce();
        let line = format!(
            "printf '%s_%s\\n' RBXB {nonce}; {body}; printf '\\n%s_%s_%s\\n' RBXE {nonce} \"$?\"\n"
        );
        self.con.send(line.as_bytes())?;
        if !data.is_empty() {
            self.con.send(data)?;
        }
        let out = self.read_output(&nonce, deadline)?;
        let status = self.read_status(deadline)?;
        Ok(Raw { out, status })
    }

    /// [`Shell::exec_raw_with`] without data.
    pub(crate) fn exec_raw(&mut self, body: &str, deadline: Instant) -> Result<Raw, Error> {
        self.exec_raw_with(body, &[], deadline)
    }

    fn read_output(&mut self, nonce: &str, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.con.take_until(
            format!("RBXB_{nonce}\n").as_bytes(),
            deadline,
            "start of the command",
        )?;
        self.con.take_until(
            format!("\nRBXE_{nonce}_").as_bytes(),
            deadline,
            "end of the output",
        )
    }

    fn read_status(&mut self, deadline: Instant) -> Result<i32, Error> {
        let text = self.con.take_until(b"\n", deadline, "exit status")?;
        let text = String::from_utf8_lossy(&text);
        text.trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("the shell printed {text:?} as an exit status")))
    }

    /// Interrupt whatever runs and get the shell back: ^C twice, then ^\.
    /// A console that does not come back is broken for the session.
    pub(crate) fn recover(&mut self) -> Result<(), Error> {
        for keys in [&b"\x03"[..], b"\x03", b"\x1c"] {
            self.con.send(keys)?;
            match login::sync(&mut self.con, RECOVER_WAIT) {
                Ok(()) => return Ok(()),
                Err(Error::Timeout(_)) => continue,
                Err(e) => return Err(self.fail(e)),
            }
        }
        Err(self.fail(Error::Protocol(
            "the console did not answer after the command was interrupted".into(),
        )))
    }

    /// Mark the console unusable for the rest of the session.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        self.broken = Some(crate::message(&e).to_string());
        e
    }

    fn usable(&self) -> Result<(), Error> {
        match &self.broken {
            Some(why) => Err(Error::Io(format!(
                "the console is out of step after an earlier failure ({why})"
            ))),
            None => Ok(()),
        }
    }

    /// Run the teardown commands, restore what the session changed and log
    /// out if the session logged in.
    pub fn close(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + GRACE;
        if self.broken.is_none() {
            if let Some(teardown) = self.config.teardown.clone().filter(|_| self.set_up) {
                let body = self.eval_body(&teardown, "teardown")?;
                let raw = self.exec_raw(&format!("{{ {body}; }} 2>&1"), deadline)?;
                if raw.status != 0 {
                    self.con.link.log(
                        Level::Warn,
                        &format!("the teardown commands failed with status {}", raw.status),
                    );
                }
            }
            self.exec_raw(
                "[ -n \"$RBXD\" ] && rm -rf \"$RBXD\"; [ -n \"$RBXK\" ] && echo \"$RBXK\" > /proc/sys/kernel/printk; \
                 PS1=$RBXPS1; PS2=$RBXPS2; unset RBXPS1 RBXPS2 RBXD RBXK RBXF RBXT; stty echo opost 2>/dev/null",
                deadline,
            )?;
        }
        if self.reached == Reached::LoggedIn {
            self.con.send(b"exit\n")?;
        }
        self.broken = Some("the session is closed".into());
        Ok(())
    }
}
