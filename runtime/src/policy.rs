//! The capability policy of a session: what its transport may reach.
//!
//! Every capability is denied unless granted. The defaults come from the
//! transport's description (the endpoints, AWS actions and streams it says it
//! needs) and from the URL the user typed; a TOML policy file can narrow or
//! widen them. `railbox inspect` prints the result.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::limits::Limits;

/// Where a grant came from; only grants the user made can reach local
/// addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Declared by the transport's description.
    Transport,
    /// Named by the user: in the target URL, the environment or a policy file.
    User,
}

/// One HTTP endpoint a transport may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRule {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal, without a trailing dot.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// Who granted it.
    pub origin: Origin,
}

impl HttpRule {
    /// Parse a rule from an endpoint URL such as `https://ssm.eu-west-1.amazonaws.com`.
    pub fn parse(endpoint: &str, origin: Origin) -> Result<HttpRule, PolicyError> {
        let url = Url::parse(endpoint).map_err(|e| PolicyError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
        let bad = |reason: &str| PolicyError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https endpoints can be allowed"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("an endpoint must not carry a user or password"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("the endpoint has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("the endpoint has no port"))?;
        Ok(HttpRule {
            scheme: url.scheme().to_string(),
            host: normalize_host(host),
            port,
            origin,
        })
    }

    /// Whether a request to this scheme, host and port matches the rule.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.host == normalize_host(host)
            && self.port == port
    }

    /// Whether the user named a local address here explicitly, so that the
    /// resolved-address check lets loopback or link-local addresses through.
    pub fn allows_local(&self) -> bool {
        self.origin == Origin::User && (self.host == "localhost" || self.ip().is_some())
    }

    /// The rule's host as an IP address, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Lowercase a host and strip one trailing dot, so `SSM.Example.COM.` and
/// `ssm.example.com` compare equal.
pub fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// The AWS service a session may sign requests for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsGrant {
    /// SigV4 signing name, such as `ssm`.
    pub signing_name: String,
    /// Region requests are signed for.
    pub region: String,
    /// The endpoint requests go to.
    pub endpoint: HttpRule,
    /// `X-Amz-Target` actions the host signs.
    pub actions: BTreeSet<String>,
    /// Profile credentials come from, if not the default chain's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The byte stream a session may open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum StreamGrant {
    /// A local device path.
    Device {
        /// The device path.
        path: String,
    },
    /// A TCP endpoint.
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for StreamGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamGrant::Device { path } => write!(f, "device {path}"),
            StreamGrant::Tcp { host, port } => write!(f, "tcp {host}:{port}"),
        }
    }
}

/// The effective capability policy of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// HTTP endpoints the transport may call; empty denies all.
    pub http: Vec<HttpRule>,
    /// AWS services whose requests the host signs.
    pub aws: Vec<AwsGrant>,
    /// The byte stream the transport may open, if any.
    pub stream: Option<StreamGrant>,
    /// Longest connect, first-byte or between-bytes wait for an HTTP request.
    #[serde(serialize_with = "as_secs")]
    pub http_max_timeout: Duration,
    /// Largest HTTP response body the transport may receive, in bytes.
    pub http_max_response_bytes: u64,
    /// Largest HTTP request body the host signs, in bytes.
    pub http_max_request_bytes: u64,
    /// Resource limits of each session.
    #[serde(skip)]
    pub limits: Limits,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Policy {
    fn default() -> Self {
        Policy::deny_all()
    }
}

impl Policy {
    /// A policy that grants nothing.
    pub fn deny_all() -> Policy {
        Policy {
            http: Vec::new(),
            aws: Vec::new(),
            stream: None,
            http_max_timeout: Duration::from_secs(60),
            http_max_response_bytes: 16 << 20,
            http_max_request_bytes: 8 << 20,
            limits: Limits::default(),
        }
    }

    /// Grant an HTTP endpoint unless an equal rule is present; a user grant
    /// replaces a transport grant for the same endpoint.
    pub fn allow_http(&mut self, rule: HttpRule) {
        match self
            .http
            .iter_mut()
            .find(|r| r.matches(&rule.scheme, &rule.host, rule.port))
        {
            Some(existing) if rule.origin == Origin::User => existing.origin = Origin::User,
            Some(_) => {}
            None => self.http.push(rule),
        }
    }

    /// The HTTP rule a request matches, if any.
    pub fn http_rule(&self, scheme: &str, host: &str, port: u16) -> Option<&HttpRule> {
        self.http.iter().find(|r| r.matches(scheme, host, port))
    }

    /// The AWS grant whose endpoint a request goes to, if any.
    pub fn aws_grant(&self, scheme: &str, host: &str, port: u16) -> Option<&AwsGrant> {
        self.aws
            .iter()
            .find(|g| g.endpoint.matches(scheme, host, port))
    }

    /// Apply a policy file on top of this policy.
    pub fn apply(&mut self, file: &PolicyFile) -> Result<(), PolicyError> {
        if !file.defaults {
            let limits = self.limits.clone();
            *self = Policy::deny_all();
            self.limits = limits;
        }
        for endpoint in &file.http.allow {
            self.allow_http(HttpRule::parse(endpoint, Origin::User)?);
        }
        for endpoint in &file.http.deny {
            let deny = HttpRule::parse(endpoint, Origin::User)?;
            self.http
                .retain(|r| !r.matches(&deny.scheme, &deny.host, deny.port));
            self.aws
                .retain(|g| !g.endpoint.matches(&deny.scheme, &deny.host, deny.port));
        }
        for grant in &mut self.aws {
            grant.actions.extend(file.aws.allow_actions.iter().cloned());
            grant.actions.retain(|a| !file.aws.deny_actions.contains(a));
        }
        if file.stream.deny {
            self.stream = None;
        }
        if let Some(secs) = file.http.max_timeout {
            self.http_max_timeout = Duration::try_from_secs_f64(secs)
                .map_err(|_| PolicyError::Value("http.max_timeout".into()))?;
        }
        if let Some(bytes) = file.http.max_response_bytes {
            self.http_max_response_bytes = bytes;
        }
        if let Some(bytes) = file.http.max_request_bytes {
            self.http_max_request_bytes = bytes;
        }
        if let Some(limits) = &file.limits {
            self.limits = limits.clone();
        }
        Ok(())
    }
}

/// A policy file, as written by an operator or security team.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Start from the transport's defaults (`true`) or from nothing.
    #[serde(default = "yes")]
    pub defaults: bool,
    /// HTTP grants.
    #[serde(default)]
    pub http: HttpSection,
    /// AWS signing grants.
    #[serde(default)]
    pub aws: AwsSection,
    /// Byte stream grants.
    #[serde(default)]
    pub stream: StreamSection,
    /// Resource limits; replaces the defaults when present.
    pub limits: Option<Limits>,
}

fn yes() -> bool {
    true
}

/// The `[http]` section of a policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Endpoints to allow in addition to the defaults.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Endpoints to remove from the defaults.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Longest HTTP wait, in seconds.
    pub max_timeout: Option<f64>,
    /// Largest response body, in bytes.
    pub max_response_bytes: Option<u64>,
    /// Largest signed request body, in bytes.
    pub max_request_bytes: Option<u64>,
}

/// The `[aws]` section of a policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Actions to sign in addition to the transport's.
    #[serde(default)]
    pub allow_actions: Vec<String>,
    /// Actions never to sign.
    #[serde(default)]
    pub deny_actions: Vec<String>,
}

/// The `[stream]` section of a policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// Refuse every byte stream.
    #[serde(default)]
    pub deny: bool,
}

impl PolicyFile {
    /// Parse a policy file's text.
    pub fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Parse(e.message().to_string()))?;
        for endpoint in file.http.allow.iter().chain(&file.http.deny) {
            HttpRule::parse(endpoint, Origin::User)?;
        }
        Ok(file)
    }

    /// Read and parse a policy file.
    pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        PolicyFile::parse(&text).map_err(|e| PolicyError::InFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// A policy that cannot be built or read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An endpoint is not a usable URL.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The policy file is not valid TOML or has unknown keys.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range.
    #[error("bad value for {0}")]
    Value(String),
    /// The policy file cannot be read.
    #[error("cannot read policy file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The policy file has an error.
    #[error("policy file {path}: {reason}")]
    InFile {
        /// The file.
        path: String,
        /// The error.
        reason: String,
    },
    /// An AWS service cannot be set up.
    #[error("aws {service}: {reason}")]
    Aws {
        /// The service's signing name.
        service: String,
        /// Why.
        reason: String,
    },
    /// A template in the transport's description cannot be filled in.
    #[error("transport needs endpoint {template:?}: {reason}")]
    Template {
        /// The template.
        template: String,
        /// Why it cannot be used.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy as a transport's description would make it.
    fn transport_defaults() -> Policy {
        let mut policy = Policy::deny_all();
        policy.allow_http(HttpRule::parse("https://api.example.com", Origin::Transport).unwrap());
        policy.aws.push(AwsGrant {
            signing_name: "ssm".into(),
            region: "eu-west-1".into(),
            endpoint: HttpRule::parse("https://ssm.eu-west-1.amazonaws.com", Origin::Transport)
                .unwrap(),
            actions: ["AmazonSSM.SendCommand", "AmazonSSM.CancelCommand"]
                .map(String::from)
                .into(),
            profile: None,
        });
        policy.stream = Some(StreamGrant::Device {
            path: "/dev/ttyS0".into(),
        });
        policy
    }

    #[test]
    fn a_policy_file_narrows_the_defaults() {
        let file = PolicyFile::parse(
            r#"
            [http]
            deny = ["https://API.example.com."]
            max_timeout = 5
            max_response_bytes = 1024
            [aws]
            deny_actions = ["AmazonSSM.CancelCommand"]
            [stream]
            deny = true
            "#,
        )
        .unwrap();
        let mut policy = transport_defaults();
        policy.apply(&file).unwrap();
        assert!(policy.http.is_empty(), "{:?}", policy.http);
        assert_eq!(
            policy.aws[0].actions,
            BTreeSet::from(["AmazonSSM.SendCommand".to_string()])
        );
        assert_eq!(policy.stream, None);
        assert_eq!(policy.http_max_timeout, Duration::from_secs(5));
        assert_eq!(policy.http_max_response_bytes, 1024);
    }

    #[test]
    fn a_policy_file_widens_with_user_grants_that_may_be_local() {
        let file = PolicyFile::parse(
            r#"
            [http]
            allow = ["http://127.0.0.1:4566", "https://api.example.com"]
            [aws]
            allow_actions = ["AmazonSSM.ListCommands"]
            [limits]
            memory_bytes = 33554432
            "#,
        )
        .unwrap();
        let mut policy = transport_defaults();
        policy.apply(&file).unwrap();
        let local = policy.http_rule("http", "127.0.0.1", 4566).unwrap();
        assert!(local.allows_local());
        // Naming an endpoint the transport already had makes it the user's.
        let api = policy.http_rule("https", "api.example.com", 443).unwrap();
        assert_eq!(api.origin, Origin::User);
        assert_eq!(policy.http.len(), 2);
        assert!(policy.aws[0].actions.contains("AmazonSSM.ListCommands"));
        assert_eq!(policy.limits.memory_bytes, 32 << 20);
        assert_eq!(policy.limits.cpu_per_call, Limits::default().cpu_per_call);
    }

    #[test]
    fn without_defaults_only_the_file_grants_anything() {
        let file =
            PolicyFile::parse("defaults = false\n[http]\nallow = [\"https://only.example.com\"]\n")
                .unwrap();
        let mut policy = transport_defaults();
        policy.apply(&file).unwrap();
        assert_eq!(policy.http.len(), 1);
        assert_eq!(policy.http[0].host, "only.example.com");
        assert!(policy.aws.is_empty());
        assert_eq!(policy.stream, None);
    }

    #[test]
    fn bad_policy_files_say_what_is_wrong() {
        let unknown = PolicyFile::parse("[http]\nalow = []\n").unwrap_err();
        assert!(unknown.to_string().contains("alow"), "{unknown}");
        let endpoint = PolicyFile::parse("[http]\nallow = [\"ftp://x.example\"]\n").unwrap_err();
        assert!(
            endpoint.to_string().contains("only http and https"),
            "{endpoint}"
        );
        let userinfo =
            PolicyFile::parse("[http]\nallow = [\"https://u:p@x.example\"]\n").unwrap_err();
        assert!(
            userinfo.to_string().contains("user or password"),
            "{userinfo}"
        );
        let typed = PolicyFile::parse("[limits]\ncpu_per_call = \"fast\"\n").unwrap_err();
        assert!(typed.to_string().contains("invalid type"), "{typed}");
    }

    #[test]
    fn hosts_compare_without_case_or_a_trailing_dot() {
        let rule = HttpRule::parse("https://SSM.Example.com.", Origin::Transport).unwrap();
        assert!(rule.matches("HTTPS", "ssm.example.COM", 443));
        assert!(!rule.matches("https", "ssm.example.com.evil", 443));
        assert!(!rule.matches("http", "ssm.example.com", 443));
        assert!(!rule.matches("https", "ssm.example.com", 8443));
        assert!(
            !rule.allows_local(),
            "a transport's grant never reaches local addresses"
        );
    }
}
