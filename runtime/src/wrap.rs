//! Command wrapping for any transport: sudo, another user, a working
//! directory and environment variables, each shell-quoted so that the
//! command reaches the target's shell as the caller wrote it.
//!
//! The command is handed to a new `sh -c` as one quoted word, so its own
//! quoting, pipes and `;` work as written under sudo or su too. sudo runs
//! with `-n`: it fails at once rather than waiting for a password no one
//! can type. A sudo password is not supported. A command over SSM has no
//! terminal for sudo to ask on. On a serial console sudo asks on the
//! console itself, so the serial transport could answer with the host's
//! `write-secret`; that is not built, because the test VM's busybox has no
//! sudo to check it against.

use crate::files::shell_quote;

/// How to wrap a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wrap {
    /// Run through `sudo -n`.
    pub sudo: bool,
    /// Run as this user: with sudo `-u USER`, without it `su`.
    pub user: Option<String>,
    /// Working directory to change to first.
    pub cwd: Option<String>,
    /// Environment variables to set, in order.
    pub env: Vec<(String, String)>,
}

/// Why a command cannot be wrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// An environment variable name the shell would not take.
    #[error("{0:?} is not an environment variable name (letters, digits and _, not first a digit)")]
    EnvName(String),
    /// A user name that is empty or holds odd characters.
    #[error("{0:?} is not a user name")]
    User(String),
}

impl Wrap {
    /// Whether the command is passed as it is.
    pub fn is_plain(&self) -> bool {
        *self == Wrap::default()
    }

    /// The command line that runs `command` as this wrap says.
    pub fn apply(&self, command: &str) -> Result<String, WrapError> {
        if self.is_plain() {
            return Ok(command.to_string());
        }
        let mut inner = String::new();
        for (name, value) in &self.env {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                return Err(WrapError::EnvName(name.clone()));
            }
            inner.push_str(&format!("export {name}={}\n", shell_quote(value)));
        }
        if let Some(dir) = &self.cwd {
            inner.push_str(&format!("cd -- {} || exit 1\n", shell_quote(dir)));
        }
        inner.push_str(command);
        if let Some(user) = &self.user
            && (user.is_empty()
                || user.starts_with('-')
                || !user
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._-@$".contains(c)))
        {
            return Err(WrapError::User(user.clone()));
        }
        let quoted = shell_quote(&inner);
        Ok(match (&self.user, self.sudo) {
            (None, false) => format!("sh -c {quoted}"),
            (None, true) => format!("sudo -n -- sh -c {quoted}"),
            (Some(user), true) => format!("sudo -n -u {} -- sh -c {quoted}", shell_quote(user)),
            (Some(user), false) => format!("su -s /bin/sh -c {quoted} -- {}", shell_quote(user)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_wrap_changes_nothing() {
        assert_eq!(
            Wrap::default().apply("echo 'a b' | wc").unwrap(),
            "echo 'a b' | wc"
        );
    }

    /// Run a line with the local shell, as the target's would.
    fn local_sh(line: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn cwd_and_env_reach_the_command_with_their_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("it's $(here)");
        std::fs::create_dir(&odd).unwrap();
        let wrap = Wrap {
            cwd: Some(odd.display().to_string()),
            env: vec![("GREETING".into(), "$(reboot) 'x' \"y\"".into())],
            ..Wrap::default()
        };
        let line = wrap
            .apply("printf '%s|%s' \"$GREETING\" \"$(basename \"$PWD\")\"")
            .unwrap();
        assert_eq!(local_sh(&line), "$(reboot) 'x' \"y\"|it's $(here)");

        let sudo = Wrap {
            sudo: true,
            user: Some("deploy".into()),
            ..wrap
        };
        let line = sudo.apply("true").unwrap();
        assert!(line.starts_with("sudo -n -u 'deploy' -- sh -c '"), "{line}");
    }

    #[test]
    fn su_is_used_without_sudo() {
        let wrap = Wrap {
            user: Some("guest".into()),
            ..Wrap::default()
        };
        assert_eq!(
            wrap.apply("id -un").unwrap(),
            "su -s /bin/sh -c 'id -un' -- 'guest'"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let env = Wrap {
            env: vec![("1X".into(), "v".into())],
            ..Wrap::default()
        };
        assert_eq!(env.apply("true"), Err(WrapError::EnvName("1X".into())));
        let user = Wrap {
            user: Some("-rf".into()),
            ..Wrap::default()
        };
        assert_eq!(user.apply("true"), Err(WrapError::User("-rf".into())));
    }
}
