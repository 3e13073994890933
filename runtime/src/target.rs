//! Target URLs: parsing, option coercion and secrets.
//!
//! A target URL names the transport (by scheme), the machine and the options,
//! such as `awsssm://i-0123456789abcdef0/?execution_timeout=600`. Query values
//! arrive as text and are coerced to the type the transport declares; secret
//! options stay in the host and reach the transport only as a marker.

use std::collections::HashMap;
use std::fmt;

use url::Url;
use zeroize::Zeroizing;

use crate::bindings::types::{Description, OptionSpec, OptionType, OptionValue, Target};

/// A target URL or option that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// The text is not a URL.
    #[error("malformed target URL {url:?}: {reason}")]
    Malformed {
        /// The URL as typed.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The transport declares no such option.
    #[error("unknown option {name:?} for {transport}; known options: {known}")]
    UnknownOption {
        /// The option.
        name: String,
        /// The transport.
        transport: String,
        /// The options the transport declares.
        known: String,
    },
    /// An option's value does not fit its type.
    #[error("option {name:?} takes {expected}, got {value:?}")]
    BadValue {
        /// The option.
        name: String,
        /// The type it takes.
        expected: &'static str,
        /// The value given; empty for secrets.
        value: String,
    },
    /// An option was given twice.
    #[error("option {0:?} is given more than once")]
    Duplicate(String),
    /// The URL carries a password the transport cannot take.
    #[error("{0} takes no password in the URL")]
    NoPassword(String),
}

/// Secret option values, kept in the host and wiped when dropped.
#[derive(Default, Clone)]
pub struct Secrets(HashMap<String, Zeroizing<String>>);

impl Secrets {
    /// The value of a secret option, if one was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.as_str())
    }

    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A target ready to open: what the transport sees and what the host keeps.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The target as passed to the transport.
    pub target: Target,
    /// Secret option values.
    pub secrets: Secrets,
}

/// Parse a target URL; the scheme is lowercased by the parser.
pub fn parse_url(text: &str) -> Result<Url, TargetError> {
    let malformed = |reason: String| TargetError::Malformed {
        url: redact(text),
        reason,
    };
    let url = Url::parse(text).map_err(|e| malformed(e.to_string()))?;
    if url.cannot_be_a_base() {
        return Err(malformed("expected scheme://host/path?options".into()));
    }
    Ok(url)
}

/// Hide a password in a URL before it goes into a message.
pub fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}

/// Build the target a transport opens from its URL and extra `name=value`
/// options, coercing each value to the declared type and filling defaults.
pub fn resolve(
    url: &Url,
    description: &Description,
    extra: &[(String, String)],
) -> Result<Resolved, TargetError> {
    let mut given: Vec<(String, Zeroizing<String>)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
        .collect();
    given.extend(
        extra
            .iter()
            .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone()))),
    );
    if let Some(password) = url.password() {
        let spec = description
            .options
            .iter()
            .find(|o| o.name == "password" && o.secret)
            .ok_or_else(|| TargetError::NoPassword(description.name.clone()))?;
        let decoded = percent_decode(password);
        given.push((spec.name.clone(), Zeroizing::new(decoded)));
    }

    let mut options = Vec::new();
    let mut secrets = Secrets::default();
    for (name, value) in &given {
        let spec = find_spec(description, name)?;
        if options
            .iter()
            .any(|(n, _): &(String, OptionValue)| n == name)
        {
            return Err(TargetError::Duplicate(name.clone()));
        }
        if spec.secret {
            secrets.0.insert(name.clone(), value.clone());
            options.push((name.clone(), OptionValue::Secret));
        } else {
            options.push((name.clone(), coerce(spec, value)?));
        }
    }
    for spec in &description.options {
        if let Some(default) = &spec.default
            && !spec.secret
            && !options.iter().any(|(n, _)| *n == spec.name)
        {
            options.push((spec.name.clone(), coerce(spec, default)?));
        }
    }

    let user = (!url.username().is_empty()).then(|| percent_decode(url.username()));
    let target = Target {
        scheme: url.scheme().to_string(),
        user,
        host: url.host_str().map(str::to_string),
        port: url.port(),
        path: percent_decode(url.path()),
        options,
    };
    Ok(Resolved { target, secrets })
}

fn find_spec<'a>(description: &'a Description, name: &str) -> Result<&'a OptionSpec, TargetError> {
    description
        .options
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| TargetError::UnknownOption {
            name: name.to_string(),
            transport: description.name.clone(),
            known: known_options(description),
        })
}

fn known_options(description: &Description) -> String {
    if description.options.is_empty() {
        return "none".into();
    }
    let names: Vec<_> = description
        .options
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    names.join(", ")
}

/// Coerce an option's text to its declared type.
pub fn coerce(spec: &OptionSpec, text: &str) -> Result<OptionValue, TargetError> {
    let bad = |expected| TargetError::BadValue {
        name: spec.name.clone(),
        expected,
        value: if spec.secret {
            String::new()
        } else {
            text.to_string()
        },
    };
    let text = text.trim();
    match spec.type_ {
        OptionType::String => Ok(OptionValue::String(text.to_string())),
        OptionType::Integer => text
            .parse::<i64>()
            .map(OptionValue::Integer)
            .map_err(|_| bad("an integer")),
        OptionType::Float => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(OptionValue::Float(f)),
            _ => Err(bad("a number")),
        },
        OptionType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(OptionValue::Boolean(true)),
            "false" | "no" | "off" | "0" => Ok(OptionValue::Boolean(false)),
            _ => Err(bad("true or false")),
        },
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The name of an option type, as shown to users.
pub fn type_name(t: OptionType) -> &'static str {
    match t {
        OptionType::String => "string",
        OptionType::Integer => "integer",
        OptionType::Float => "float",
        OptionType::Boolean => "boolean",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::Needs;

    fn description() -> Description {
        let spec = |name: &str, type_, default: Option<&str>, secret| OptionSpec {
            name: name.into(),
            type_,
            default: default.map(str::to_string),
            doc: String::new(),
            secret,
        };
        Description {
            name: "demo".into(),
            version: "1".into(),
            summary: String::new(),
            schemes: vec!["demo".into()],
            options: vec![
                spec("execution_timeout", OptionType::Integer, Some("60"), false),
                spec("ratio", OptionType::Float, None, false),
                spec("verbose", OptionType::Boolean, Some("false"), false),
                spec("region", OptionType::String, None, false),
                spec("password", OptionType::String, None, true),
            ],
            needs: Needs {
                http: vec![],
                aws: vec![],
                streams: vec![],
            },
        }
    }

    fn value<'a>(r: &'a Resolved, name: &str) -> Option<&'a OptionValue> {
        r.target
            .options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn query_values_are_coerced_to_their_declared_types() {
        let url = parse_url("demo://host/?execution_timeout=600&ratio=0.5&verbose=yes").unwrap();
        let r = resolve(&url, &description(), &[]).unwrap();
        assert_eq!(
            value(&r, "execution_timeout"),
            Some(&OptionValue::Integer(600))
        );
        assert_eq!(value(&r, "ratio"), Some(&OptionValue::Float(0.5)));
        assert_eq!(value(&r, "verbose"), Some(&OptionValue::Boolean(true)));
    }

    #[test]
    fn defaults_fill_options_the_user_left_out() {
        let url = parse_url("demo://host/").unwrap();
        let r = resolve(&url, &description(), &[]).unwrap();
        assert_eq!(
            value(&r, "execution_timeout"),
            Some(&OptionValue::Integer(60))
        );
        assert_eq!(value(&r, "verbose"), Some(&OptionValue::Boolean(false)));
        assert_eq!(value(&r, "region"), None);
    }

    #[test]
    fn an_ill_typed_option_names_the_option_and_its_type() {
        let url = parse_url("demo://host/?execution_timeout=ten").unwrap();
        let err = resolve(&url, &description(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"option "execution_timeout" takes an integer, got "ten""#
        );
    }

    #[test]
    fn an_unknown_option_lists_the_known_ones() {
        let url = parse_url("demo://host/?colour=red").unwrap();
        let err = resolve(&url, &description(), &[]).unwrap_err().to_string();
        assert!(err.contains(r#"unknown option "colour" for demo"#), "{err}");
        assert!(
            err.contains("execution_timeout, ratio, verbose, region, password"),
            "{err}"
        );
    }

    #[test]
    fn secrets_stay_in_the_host() {
        let url = parse_url("demo://root:s3cr%40t@host/").unwrap();
        let r = resolve(&url, &description(), &[]).unwrap();
        assert_eq!(value(&r, "password"), Some(&OptionValue::Secret));
        assert_eq!(r.secrets.get("password"), Some("s3cr@t"));
        assert_eq!(r.target.user.as_deref(), Some("root"));
        assert!(!format!("{r:?}").contains("s3cr"));
    }

    #[test]
    fn a_malformed_url_is_refused_without_echoing_its_password() {
        let err = parse_url("not a url").unwrap_err().to_string();
        assert!(err.starts_with("malformed target URL"), "{err}");
        assert_eq!(redact("demo://u:pw@h/"), "demo://u:***@h/");
    }

    #[test]
    fn options_from_the_command_line_join_the_query() {
        let url = parse_url("demo://host/").unwrap();
        let extra = [("region".to_string(), "eu-west-1".to_string())];
        let r = resolve(&url, &description(), &extra).unwrap();
        assert_eq!(
            value(&r, "region"),
            Some(&OptionValue::String("eu-west-1".into()))
        );
        let twice = [
            ("region".to_string(), "a".to_string()),
            ("region".to_string(), "b".to_string()),
        ];
        assert_eq!(
            resolve(&url, &description(), &twice).unwrap_err(),
            TargetError::Duplicate("region".into())
        );
    }
}
