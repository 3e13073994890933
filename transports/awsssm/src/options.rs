//! The options an `awsssm://` target URL may carry, and the settings they give.
//!
//! The host coerces option text to the declared type and fills defaults before
//! the session opens, so this module only checks ranges. Names follow
//! train-awsssm where it has one (`execution_timeout`).

use std::time::Duration;

use crate::error::Error;

/// The declared type of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A whole number.
    Integer,
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
}

/// Every option the transport accepts.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "region",
        kind: Kind::Text,
        default: None,
        doc: "AWS region of the instance; otherwise AWS_REGION or the profile's region",
    },
    Spec {
        name: "profile",
        kind: Kind::Text,
        default: None,
        doc: "AWS profile the host takes credentials and region from",
    },
    Spec {
        name: "endpoint",
        kind: Kind::Text,
        default: None,
        doc: "SSM endpoint URL; otherwise AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL or the profile's",
    },
    Spec {
        name: "execution_timeout",
        kind: Kind::Integer,
        default: Some("60"),
        doc: "seconds a command may run on the instance before SSM stops it (at most the \
              caller's timeout)",
    },
    Spec {
        name: "delivery_timeout",
        kind: Kind::Integer,
        default: Some("60"),
        doc: "seconds SSM tries to deliver a command to the instance (30 or more)",
    },
    Spec {
        name: "poll_initial_ms",
        kind: Kind::Integer,
        default: Some("100"),
        doc: "milliseconds between sending a command and first asking for its result",
    },
    Spec {
        name: "poll_max_ms",
        kind: Kind::Integer,
        default: Some("2000"),
        doc: "longest pause in milliseconds between two polls of a running command",
    },
    Spec {
        name: "invocation_wait",
        kind: Kind::Integer,
        default: Some("30"),
        doc: "seconds to wait for a new command to become visible in the SSM API",
    },
    Spec {
        name: "document",
        kind: Kind::Text,
        default: None,
        doc: "SSM document to run commands with; AWS-RunShellScript, or \
              AWS-RunPowerShellScript on Windows",
    },
    Spec {
        name: "working_directory",
        kind: Kind::Text,
        default: None,
        doc: "directory on the instance that commands start in",
    },
];

/// An option value as the host hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// Anything this transport does not declare (float, boolean, secret).
    Other,
}

/// The settings of one session, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Longest run of a command on the instance, in seconds.
    pub execution_timeout: u64,
    /// SendCommand `TimeoutSeconds`: how long SSM tries to deliver.
    pub delivery_timeout: u64,
    /// First pause between sending and polling.
    pub poll_initial: Duration,
    /// Longest pause between polls.
    pub poll_max: Duration,
    /// How long a new invocation may stay invisible.
    pub invocation_wait: Duration,
    /// The document named by the user, if any.
    pub document: Option<String>,
    /// The directory commands start in, if set.
    pub working_directory: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            execution_timeout: 60,
            delivery_timeout: 60,
            poll_initial: Duration::from_millis(100),
            poll_max: Duration::from_millis(2000),
            invocation_wait: Duration::from_secs(30),
            document: None,
            working_directory: None,
        }
    }
}

impl Config {
    /// Check the options of a target and build the settings.
    pub fn from_options(options: &[(String, Value)]) -> Result<Config, Error> {
        let mut config = Config::default();
        let int = |name: &str, min: i64, max: i64| -> Result<Option<u64>, Error> {
            match lookup(options, name) {
                None => Ok(None),
                Some(Value::Integer(v)) if (min..=max).contains(v) => Ok(Some(*v as u64)),
                Some(Value::Integer(v)) => Err(Error::InvalidTarget(format!(
                    "option {name} must be between {min} and {max}, got {v}"
                ))),
                Some(_) => Err(Error::InvalidTarget(format!(
                    "option {name} takes an integer"
                ))),
            }
        };
        if let Some(v) = int("execution_timeout", 1, 172_800)? {
            config.execution_timeout = v;
        }
        if let Some(v) = int("delivery_timeout", 30, 2_592_000)? {
            config.delivery_timeout = v;
        }
        if let Some(v) = int("poll_initial_ms", 1, 60_000)? {
            config.poll_initial = Duration::from_millis(v);
        }
        if let Some(v) = int("poll_max_ms", 1, 60_000)? {
            config.poll_max = Duration::from_millis(v);
        }
        if config.poll_max < config.poll_initial {
            return Err(Error::InvalidTarget(format!(
                "option poll_max_ms ({} ms) must not be below poll_initial_ms ({} ms)",
                config.poll_max.as_millis(),
                config.poll_initial.as_millis()
            )));
        }
        if let Some(v) = int("invocation_wait", 0, 3_600)? {
            config.invocation_wait = Duration::from_secs(v);
        }
        config.document = text(options, "document")?;
        if let Some(doc) = &config.document {
            check_document_name(doc)?;
        }
        config.working_directory = text(options, "working_directory")?;
        if let Some(dir) = &config.working_directory
            && dir.len() > 4096
        {
            return Err(Error::InvalidTarget(
                "option working_directory is longer than SSM's 4096 characters".into(),
            ));
        }
        Ok(config)
    }
}

fn lookup<'a>(options: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    options.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// A non-empty text option, if given.
fn text(options: &[(String, Value)], name: &str) -> Result<Option<String>, Error> {
    match lookup(options, name) {
        None => Ok(None),
        Some(Value::Text(s)) if s.is_empty() => Ok(None),
        Some(Value::Text(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::InvalidTarget(format!("option {name} takes text"))),
    }
}

/// SSM's document name rule: `^[a-zA-Z0-9_\-.:/]{3,128}$`.
fn check_document_name(name: &str) -> Result<(), Error> {
    let ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTarget(format!(
            "{name:?} is not an SSM document name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_no_option_is_given() {
        assert_eq!(Config::from_options(&[]).unwrap(), Config::default());
    }

    #[test]
    fn every_declared_default_parses_to_the_built_in_default() {
        let given: Vec<(String, Value)> = SPECS
            .iter()
            .filter_map(|s| {
                let d = s.default?;
                let v = match s.kind {
                    Kind::Integer => Value::Integer(d.parse().unwrap()),
                    Kind::Text => Value::Text(d.into()),
                };
                Some((s.name.to_string(), v))
            })
            .collect();
        assert_eq!(Config::from_options(&given).unwrap(), Config::default());
    }

    #[test]
    fn delivery_timeout_below_the_service_minimum_is_refused() {
        let err = Config::from_options(&opts(&[("delivery_timeout", Value::Integer(10))]));
        assert!(matches!(err, Err(Error::InvalidTarget(m)) if m.contains("delivery_timeout")));
    }

    #[test]
    fn poll_bounds_must_be_ordered() {
        let err = Config::from_options(&opts(&[
            ("poll_initial_ms", Value::Integer(500)),
            ("poll_max_ms", Value::Integer(100)),
        ]));
        assert!(matches!(err, Err(Error::InvalidTarget(_))));
    }

    #[test]
    fn document_and_directory_are_taken_as_given() {
        let c = Config::from_options(&opts(&[
            ("document", Value::Text("My-Doc_1".into())),
            ("working_directory", Value::Text("/srv/app".into())),
            ("region", Value::Text("eu-west-1".into())),
        ]))
        .unwrap();
        assert_eq!(c.document.as_deref(), Some("My-Doc_1"));
        assert_eq!(c.working_directory.as_deref(), Some("/srv/app"));
    }

    #[test]
    fn bad_document_names_are_refused() {
        let err = Config::from_options(&opts(&[("document", Value::Text("a b".into()))]));
        assert!(matches!(err, Err(Error::InvalidTarget(_))));
    }

    #[test]
    fn option_names_are_unique_and_documented() {
        for (i, s) in SPECS.iter().enumerate() {
            assert!(!s.doc.is_empty(), "{} has no doc", s.name);
            assert!(
                SPECS[i + 1..].iter().all(|o| o.name != s.name),
                "{} twice",
                s.name
            );
        }
    }
}
