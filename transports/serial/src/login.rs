//! Reaching a shell: wake the console, answer its login and password
//! prompts, or take over a shell that is already open.
//!
//! The console's state is unknown when a session starts: a getty's login
//! prompt, a banner still printing, a shell someone left logged in, or
//! silence. The loop reads until the console goes quiet, then looks at the
//! last line it printed. A shell is only believed once it has run a line of
//! ours and printed its marker, so a prompt-like banner cannot fool it.

use std::time::{Duration, Instant};

use crate::Error;
use crate::console::{Console, last_line, visible};
use crate::link::Link;
use crate::options::Config;

/// How the session reached its shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The transport logged in; it logs out when the session closes.
    LoggedIn,
    /// A shell was already open; it stays open.
    FoundShell,
}

/// The console is taken to have finished a burst after this much silence.
const QUIET: Duration = Duration::from_millis(400);

/// How long a shell has to answer one synchronising line.
const SYNC_WAIT: Duration = Duration::from_secs(3);

/// Bring the console to a shell of ours before `deadline`.
pub fn reach_shell<L: Link>(
    con: &mut Console<L>,
    config: &Config,
    deadline: Instant,
) -> Result<Reached, Error> {
    let user = &config.user;
    let mut names_sent = 0;
    let mut awaiting_password = false;
    let mut password_sent = false;
    let mut silent_wakes = 0;
    con.send(b"\r")?;
    loop {
        if Instant::now() >= deadline {
            let seen = last_line(con.buffered());
            return Err(Error::Timeout(format!(
                "no login prompt or shell on the console within {} s; the last line it showed was {seen:?}",
                config.login_timeout.as_secs()
            )));
        }
        let arrived = con.settle(QUIET, deadline)?;
        let line = last_line(con.buffered());
        if password_sent && config.login_failure.is_match(&visible(con.buffered())) {
            return Err(Error::Denied(format!(
                "the console refused the password for {user}"
            )));
        }
        if config.password_prompt.is_match(&line) {
            con.clear();
            if !awaiting_password {
                // Something other than our user name reached a login
                // prompt; an empty answer brings the prompt back.
                con.send(b"\n")?;
                continue;
            }
            if !config.has_password {
                return Err(Error::Denied(format!(
                    "the console asks for {user}'s password; give it with the password option"
                )));
            }
            con.link.write_secret("password")?;
            con.send(b"\n")?;
            awaiting_password = false;
            password_sent = true;
            continue;
        }
        if config.login_prompt.is_match(&line) {
            con.clear();
            if password_sent {
                return Err(Error::Denied(format!(
                    "the console refused the password for {user}"
                )));
            }
            if names_sent == 3 {
                return Err(Error::Protocol(format!(
                    "the console asked for a login three times without asking for {user}'s password"
                )));
            }
            con.send(format!("{user}\n").as_bytes())?;
            names_sent += 1;
            awaiting_password = true;
            continue;
        }
        let looks_like_shell = config.shell_prompt.is_match(&line);
        if looks_like_shell || (!arrived && silent_wakes >= 2) {
            match sync(
                con,
                SYNC_WAIT.min(deadline.saturating_duration_since(Instant::now())),
            ) {
                Ok(()) => {
                    return Ok(if names_sent > 0 {
                        Reached::LoggedIn
                    } else {
                        Reached::FoundShell
                    });
                }
                // Not a shell after all; look at what it printed instead.
                Err(Error::Timeout(_)) => {
                    silent_wakes = 0;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if !arrived {
            con.send(b"\r")?;
            silent_wakes += 1;
        }
    }
}

/// Have the shell run a line of ours and wait for its answer, throwing away
/// whatever came before. The line also turns off echo and output
/// processing; whether `\n` still arrives as `\r\n` tells if that worked.
pub fn sync<L: Link>(con: &mut Console<L>, wait: Duration) -> Result<(), Error> {
    let nonce = con.link.nonce();
    con.clear();
    con.set_crlf(false);
    // ^U first: it drops any half-typed line the shell holds.
    let line = format!("\x15stty -echo -opost 2>/dev/null; printf '%s_%s\\n' RBXS {nonce}\n");
    con.send(line.as_bytes())?;
    let deadline = Instant::now() + wait;
    con.take_until(
        format!("RBXS_{nonce}").as_bytes(),
        deadline,
        "answer from a shell",
    )?;
    let ending = con.take_until(b"\n", deadline, "end of the shell's answer")?;
    con.set_crlf(ending == b"\r");
    Ok(())
}
