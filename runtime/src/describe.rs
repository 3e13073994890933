//! A transport's description: checking it, and turning what it says it needs
//! into the default policy for one target.
//!
//! The description is the transport's manifest. Security teams read it (via
//! `railbox inspect`) to see what a transport asks for; the host grants no
//! more than it says, filled in with what the user typed.

use crate::bindings::types::{Description, OptionValue, StreamSource, Target};
use crate::policy::{HttpRule, Origin, Policy, PolicyError, StreamGrant};
use crate::target::coerce;

/// Check that a description is usable; the error says what is wrong.
pub fn validate(d: &Description) -> Result<(), String> {
    if !is_word(&d.name) {
        return Err(format!("name {:?} is not a lowercase word", d.name));
    }
    if d.schemes.is_empty() {
        return Err("it serves no URL scheme".into());
    }
    for scheme in &d.schemes {
        let ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            return Err(format!("scheme {scheme:?} is not a valid URL scheme"));
        }
    }
    for (i, option) in d.options.iter().enumerate() {
        if !is_word(&option.name) {
            return Err(format!(
                "option name {:?} is not a lowercase word",
                option.name
            ));
        }
        if d.options[..i].iter().any(|o| o.name == option.name) {
            return Err(format!("option {:?} is declared twice", option.name));
        }
        if let Some(default) = &option.default {
            coerce(option, default).map_err(|e| format!("default of {e}"))?;
        }
    }
    for stream in &d.needs.streams {
        if !d.schemes.contains(&stream.scheme) {
            return Err(format!(
                "it needs a stream for scheme {:?}, which it does not serve",
                stream.scheme
            ));
        }
    }
    for service in &d.needs.aws {
        if !is_word(&service.signing_name) || !is_word(&service.endpoint_prefix) {
            return Err(format!(
                "AWS service {:?} has a bad name",
                service.signing_name
            ));
        }
    }
    Ok(())
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// The HTTP and stream grants a description asks for, for one target. AWS
/// grants are added by [`crate::aws::resolve`].
pub fn default_policy(d: &Description, target: &Target) -> Result<Policy, PolicyError> {
    let mut policy = Policy::deny_all();
    for template in &d.needs.http {
        if let Some(rule) = expand(template, target)? {
            policy.allow_http(rule);
        }
    }
    for need in d.needs.streams.iter().filter(|s| s.scheme == target.scheme) {
        policy.stream = Some(stream_grant(need.source, target)?);
    }
    Ok(policy)
}

fn stream_grant(source: StreamSource, target: &Target) -> Result<StreamGrant, PolicyError> {
    let bad = |reason: &str| PolicyError::Template {
        template: format!("{}://", target.scheme),
        reason: reason.to_string(),
    };
    match source {
        StreamSource::DevicePath => {
            if !target.path.starts_with('/') || target.path.len() < 2 {
                return Err(bad(
                    "the URL must name a device path, like serial:///dev/ttyS0",
                ));
            }
            Ok(StreamGrant::Device {
                path: target.path.clone(),
            })
        }
        StreamSource::TcpAddress => {
            let host = target.host.clone().filter(|h| !h.is_empty());
            match (host, target.port) {
                (Some(host), Some(port)) => Ok(StreamGrant::Tcp { host, port }),
                _ => Err(bad(
                    "the URL must name a host and port, like serial+tcp://console:7001",
                )),
            }
        }
    }
}

/// Fill a URL template's `{option}` placeholders. A template that is just
/// one placeholder is the user's endpoint; otherwise values must be plain
/// names so they cannot change where the URL points. A template whose
/// option has no value is skipped.
fn expand(template: &str, target: &Target) -> Result<Option<HttpRule>, PolicyError> {
    let bad = |reason: String| PolicyError::Template {
        template: template.to_string(),
        reason,
    };
    let whole = template.starts_with('{')
        && template.ends_with('}')
        && template[1..template.len() - 1]
            .chars()
            .all(|c| c != '{' && c != '}');
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| bad("unclosed placeholder".into()))?;
        let name = &rest[open + 1..open + close];
        let Some(value) = option_text(target, name) else {
            return Ok(None);
        };
        if !whole
            && !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        {
            return Err(bad(format!(
                "option {name} must be a plain name, got {value:?}"
            )));
        }
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    let origin = if whole {
        Origin::User
    } else {
        Origin::Transport
    };
    HttpRule::parse(&out, origin).map(Some)
}

fn option_text(target: &Target, name: &str) -> Option<String> {
    target.options.iter().find_map(|(k, v)| match v {
        _ if k != name => None,
        OptionValue::String(s) if !s.is_empty() => Some(s.clone()),
        OptionValue::Integer(i) => Some(i.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(options: &[(&str, &str)]) -> Target {
        Target {
            scheme: "demo".into(),
            user: None,
            host: Some("h".into()),
            port: None,
            path: "/".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), OptionValue::String(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn templates_take_plain_option_values() {
        let rule = expand(
            "https://api.{region}.example.com",
            &target(&[("region", "eu-west-1")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(rule.to_string(), "https://api.eu-west-1.example.com:443");
        assert_eq!(rule.origin, Origin::Transport);
    }

    #[test]
    fn a_template_value_cannot_redirect_the_endpoint() {
        let t = target(&[("region", "x@evil.com/")]);
        assert!(expand("https://api.{region}.example.com", &t).is_err());
    }

    #[test]
    fn a_whole_url_option_is_the_users_endpoint() {
        let t = target(&[("endpoint", "http://127.0.0.1:4566")]);
        let rule = expand("{endpoint}", &t).unwrap().unwrap();
        assert_eq!(rule.origin, Origin::User);
        assert!(rule.allows_local());
        assert_eq!(expand("{endpoint}", &target(&[])).unwrap(), None);
    }
}
