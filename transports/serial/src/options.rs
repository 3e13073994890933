//! The options a `serial://` or `serial+tcp://` target URL may carry, and the
//! settings they give.
//!
//! The host coerces option text to the declared type and fills defaults
//! before the session opens, so this module checks ranges and compiles the
//! prompt patterns. Names follow train-serial where it has one (`baud`,
//! `data_bits`, `parity`, `stop_bits`, `setup`, `teardown`,
//! `prompt_pattern`).

use std::time::Duration;

use regex_lite::Regex;

use crate::Error;

/// The declared type of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
}

/// One option as the transport declares it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Name in the URL query.
    pub name: &'static str,
    /// Type the host coerces the value to.
    pub kind: Kind,
    /// Default, as text, when the URL gives none.
    pub default: Option<&'static str>,
    /// One-line help.
    pub doc: &'static str,
    /// Whether the host keeps the value and only writes it into the stream.
    pub secret: bool,
}

const fn spec(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> Spec {
    Spec {
        name,
        kind,
        default,
        doc,
        secret: false,
    }
}

/// Every option the transport accepts.
pub const SPECS: &[Spec] = &[
    spec(
        "baud",
        Kind::Integer,
        Some("115200"),
        "line speed in bits per second; also paces transfer timeouts on TCP consoles",
    ),
    spec(
        "data_bits",
        Kind::Integer,
        Some("8"),
        "data bits per character, 5 to 8",
    ),
    spec(
        "parity",
        Kind::Text,
        Some("none"),
        "parity: none, odd or even",
    ),
    spec("stop_bits", Kind::Integer, Some("1"), "stop bits, 1 or 2"),
    spec(
        "flow_control",
        Kind::Text,
        Some("none"),
        "flow control: none, software (XON/XOFF) or hardware (RTS/CTS)",
    ),
    spec(
        "user",
        Kind::Text,
        Some("root"),
        "user to log in as when the console asks; the URL's user wins",
    ),
    Spec {
        name: "password",
        kind: Kind::Text,
        default: None,
        doc: "password for the login prompt; the host writes it to the console, the transport never sees it",
        secret: true,
    },
    spec(
        "login_timeout",
        Kind::Integer,
        Some("60"),
        "seconds to reach a shell: wake the console, log in, take over the shell",
    ),
    spec(
        "login_prompt",
        Kind::Text,
        Some(r"(?i)(login|username|user name)\s*:\s*$"),
        "pattern the end of a login prompt matches",
    ),
    spec(
        "password_prompt",
        Kind::Text,
        Some(r"(?i)password\s*:\s*$"),
        "pattern the end of a password prompt matches",
    ),
    spec(
        "prompt_pattern",
        Kind::Text,
        Some(r"[#$%>]\s*$"),
        "pattern the end of a shell prompt matches",
    ),
    spec(
        "login_failure",
        Kind::Text,
        Some(
            r"(?i)(login incorrect|incorrect password|authentication fail|access denied|permission denied)",
        ),
        "pattern of the console's answer to a wrong password",
    ),
    spec(
        "setup",
        Kind::Text,
        None,
        "shell commands run in the console's shell after login, such as exports",
    ),
    spec(
        "teardown",
        Kind::Text,
        None,
        "shell commands run in the console's shell before the session closes",
    ),
    spec(
        "quiet_kernel",
        Kind::Boolean,
        Some("true"),
        "keep kernel messages off the console while the session is open (needs root)",
    ),
    spec(
        "chunk_size",
        Kind::Integer,
        Some("32768"),
        "bytes of a file sent or received per checksummed chunk",
    ),
];

/// Parity of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Flow control of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// None.
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// An option value as the host passes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
    /// A secret the host holds.
    Secret,
}

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Line speed in bits per second.
    pub baud: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Flow control.
    pub flow: Flow,
    /// User to log in as.
    pub user: String,
    /// Whether a password was given (the host holds it).
    pub has_password: bool,
    /// Longest time to reach a shell.
    pub login_timeout: Duration,
    /// End of a login prompt.
    pub login_prompt: Regex,
    /// End of a password prompt.
    pub password_prompt: Regex,
    /// End of a shell prompt.
    pub shell_prompt: Regex,
    /// The console's answer to a wrong password.
    pub login_failure: Regex,
    /// Commands run after login.
    pub setup: Option<String>,
    /// Commands run before close.
    pub teardown: Option<String>,
    /// Whether to lower the kernel's console log level.
    pub quiet_kernel: bool,
    /// Bytes per transfer chunk.
    pub chunk_size: usize,
}

impl Config {
    /// Settings from the host's coerced options and the URL's user.
    pub fn from_options(
        options: &[(String, Value)],
        url_user: Option<&str>,
    ) -> Result<Config, Error> {
        let get = |name: &str| options.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let int = |name: &str, lo: i64, hi: i64| -> Result<i64, Error> {
            match get(name) {
                Some(Value::Integer(i)) if (lo..=hi).contains(i) => Ok(*i),
                Some(Value::Integer(i)) => Err(Error::InvalidTarget(format!(
                    "{name}={i} is out of range; use {lo} to {hi}"
                ))),
                _ => Err(Error::InvalidTarget(format!("{name} is missing"))),
            }
        };
        let text = |name: &str| match get(name) {
            Some(Value::Text(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let pattern = |name: &str| -> Result<Regex, Error> {
            let source =
                text(name).ok_or_else(|| Error::InvalidTarget(format!("{name} is empty")))?;
            Regex::new(&source)
                .map_err(|e| Error::InvalidTarget(format!("{name} is not a valid pattern: {e}")))
        };
        let parity = match text("parity").as_deref() {
            Some("none") => Parity::None,
            Some("odd") => Parity::Odd,
            Some("even") => Parity::Even,
            other => {
                return Err(Error::InvalidTarget(format!(
                    "parity={} is not one of none, odd, even",
                    other.unwrap_or("")
                )));
            }
        };
        let flow = match text("flow_control").as_deref() {
            Some("none") => Flow::None,
            Some("software") => Flow::Software,
            Some("hardware") => Flow::Hardware,
            other => {
                return Err(Error::InvalidTarget(format!(
                    "flow_control={} is not one of none, software, hardware",
                    other.unwrap_or("")
                )));
            }
        };
        let user = match url_user {
            Some(u) if !u.is_empty() => u.to_string(),
            _ => text("user").ok_or_else(|| Error::InvalidTarget("user is empty".into()))?,
        };
        if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::InvalidTarget(format!(
                "user {user:?} holds spaces or control characters"
            )));
        }
        Ok(Config {
            baud: int("baud", 50, 4_000_000)? as u32,
            data_bits: int("data_bits", 5, 8)? as u8,
            parity,
            stop_bits: int("stop_bits", 1, 2)? as u8,
            flow,
            user,
            has_password: matches!(get("password"), Some(Value::Secret)),
            login_timeout: Duration::from_secs(int("login_timeout", 1, 3600)? as u64),
            login_prompt: pattern("login_prompt")?,
            password_prompt: pattern("password_prompt")?,
            shell_prompt: pattern("prompt_pattern")?,
            login_failure: pattern("login_failure")?,
            setup: text("setup"),
            teardown: text("teardown"),
            quiet_kernel: !matches!(get("quiet_kernel"), Some(Value::Boolean(false))),
            chunk_size: int("chunk_size", 512, 1 << 20)? as usize,
        })
    }

    /// Longest a transfer of `bytes` over the line should take: three times
    /// the line time at the configured rate, plus ten seconds for the
    /// commands on either side.
    pub fn line_time(&self, bytes: usize) -> Duration {
        let bits = self.data_bits as u64 + self.stop_bits as u64 + 1;
        let secs = (bytes as u64 * bits * 3).div_ceil(self.baud as u64);
        Duration::from_secs(secs + 10)
    }
}

#[cfg(test)]
pub(crate) fn defaults() -> Vec<(String, Value)> {
    SPECS
        .iter()
        .filter_map(|s| {
            let text = s.default?;
            let value = match s.kind {
                Kind::Text => Value::Text(text.into()),
                Kind::Integer => Value::Integer(text.parse().unwrap()),
                Kind::Boolean => Value::Boolean(text == "true"),
            };
            Some((s.name.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: Value) -> Vec<(String, Value)> {
        let mut options = defaults();
        options.retain(|(n, _)| n != name);
        options.push((name.into(), value));
        options
    }

    #[test]
    fn defaults_give_a_usable_config() {
        let config = Config::from_options(&defaults(), None).unwrap();
        assert_eq!(config.baud, 115_200);
        assert_eq!(config.user, "root");
        assert!(!config.has_password);
        assert!(config.shell_prompt.is_match("~ # "));
        assert!(config.login_prompt.is_match("railbox-vm login: "));
        assert!(config.password_prompt.is_match("Password: "));
    }

    #[test]
    fn the_url_user_wins_and_must_be_one_word() {
        let config = Config::from_options(&defaults(), Some("admin")).unwrap();
        assert_eq!(config.user, "admin");
        let err = Config::from_options(&defaults(), Some("a b")).unwrap_err();
        assert!(crate::message(&err).contains("spaces"), "{err}");
    }

    #[test]
    fn bad_values_name_the_option() {
        let err =
            Config::from_options(&with("parity", Value::Text("mark".into())), None).unwrap_err();
        assert_eq!(
            crate::message(&err),
            "parity=mark is not one of none, odd, even"
        );
        let err = Config::from_options(&with("data_bits", Value::Integer(9)), None).unwrap_err();
        assert_eq!(
            crate::message(&err),
            "data_bits=9 is out of range; use 5 to 8"
        );
        let err = Config::from_options(&with("prompt_pattern", Value::Text("([".into())), None)
            .unwrap_err();
        assert!(
            crate::message(&err).starts_with("prompt_pattern is not a valid pattern"),
            "{err}"
        );
    }

    #[test]
    fn line_time_scales_with_the_rate() {
        let config = Config::from_options(&defaults(), None).unwrap();
        // 11,520 characters a second: 115,200 characters take 10 s, so 30 s
        // with the margin, plus 10.
        assert_eq!(config.line_time(115_200), Duration::from_secs(40));
        let slow = Config::from_options(&with("baud", Value::Integer(9600)), None).unwrap();
        assert_eq!(slow.line_time(960), Duration::from_secs(13));
    }
}
