//! What an emulator run serves: region, access keys, emulated instances and limits.
//!
//! Everything here is fixed for the life of a run except [`Faults`], which the
//! handle and the admin endpoint can replace while the emulator serves.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::faults::Faults;

/// The access key id accepted when no other key is configured.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDRAILBOXEMULATOR";
/// The secret that goes with [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "railbox-emulator-secret";
/// The region served when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The agent version every generated instance reports.
pub const DEFAULT_AGENT_VERSION: &str = "3.3.1142.0";

/// Settings for one emulator run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The region in the SigV4 credential scope that requests must use.
    pub region: String,
    /// Access keys that may sign requests.
    pub credentials: Vec<Credentials>,
    /// The emulated managed instances, in the order DescribeInstanceInformation lists them.
    pub instances: Vec<Instance>,
    /// Fault injection and latencies in effect at start.
    pub faults: Faults,
    /// Answer `true`, `false`, `exit N` and plain `echo` scripts without starting a process.
    pub builtin_commands: bool,
    /// Multiplier applied to `TimeoutSeconds` and `executionTimeout`, so tests can use
    /// the service's minimums (30 s, 5 s) without waiting for them; 1.0 is real time.
    pub time_scale: f64,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted total size of SendCommand `Parameters` in bytes.
    pub max_parameters_bytes: usize,
    /// How many invocations to keep before the oldest finished commands are forgotten.
    pub max_retained_invocations: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            region: DEFAULT_REGION.to_owned(),
            credentials: vec![Credentials::default()],
            instances: Instance::numbered_range(3),
            faults: Faults::default(),
            builtin_commands: false,
            time_scale: 1.0,
            max_body_bytes: 1024 * 1024,
            max_parameters_bytes: 64 * 1024,
            max_retained_invocations: 50_000,
        }
    }
}

impl Config {
    /// Checks the settings that would otherwise fail later or misbehave silently.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        if self.credentials.is_empty() {
            return invalid("at least one access key is required".into());
        }
        // Above 1,000, the service's longest timeouts would overflow deadlines.
        if !(self.time_scale.is_finite() && self.time_scale > 0.0 && self.time_scale <= 1000.0) {
            return invalid(format!(
                "time scale must be above 0 and at most 1000, got {}",
                self.time_scale
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for instance in &self.instances {
            if !is_instance_id(&instance.id) {
                return invalid(format!(
                    "instance id {:?} is not a managed instance id",
                    instance.id
                ));
            }
            if !seen.insert(instance.id.as_str()) {
                return invalid(format!("instance id {} appears twice", instance.id));
            }
        }
        self.faults.validate().map_err(Error::InvalidConfig)
    }
}

/// An access key the emulator accepts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The access key id, e.g. `AKIDRAILBOXEMULATOR`.
    pub access_key_id: String,
    /// The secret used to derive signing keys.
    pub secret_access_key: String,
    /// When set, requests with this key must carry this `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

impl Credentials {
    /// A long-term key without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// The same key, now requiring `token` as its session token.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// Parses `ID:SECRET` or `ID:SECRET:TOKEN`, the form of `--access-key`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut parts = s.splitn(3, ':');
        let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
            return Err(Error::InvalidConfig(
                "access key must look like ID:SECRET".into(),
            ));
        };
        if id.is_empty() || secret.is_empty() {
            return Err(Error::InvalidConfig(
                "access key id and secret must not be empty".into(),
            ));
        }
        let creds = Credentials::new(id, secret);
        Ok(match parts.next() {
            Some(token) if !token.is_empty() => creds.with_session_token(token),
            _ => creds,
        })
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs and panic messages.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Whether the agent on an instance is reachable, as in `PingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PingStatus {
    /// The agent picks up commands.
    #[default]
    Online,
    /// The agent is gone; commands wait for their delivery timeout.
    ConnectionLost,
    /// The instance is stopped or deregistered; commands are never delivered.
    Inactive,
}

impl PingStatus {
    /// The spelling used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PingStatus::Online => "Online",
            PingStatus::ConnectionLost => "ConnectionLost",
            PingStatus::Inactive => "Inactive",
        }
    }
}

/// The operating-system family of an instance, as in `PlatformType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PlatformType {
    /// Linux; runs `AWS-RunShellScript` with `sh`.
    #[default]
    Linux,
    /// Windows; shell scripts are refused and PowerShell is absent.
    Windows,
    /// macOS; behaves like Linux.
    MacOS,
}

impl PlatformType {
    /// The spelling used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformType::Linux => "Linux",
            PlatformType::Windows => "Windows",
            PlatformType::MacOS => "MacOS",
        }
    }
}

/// One emulated managed instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// The instance id, `i-` followed by 8 or 17 word characters (or `mi-` and 17).
    pub id: String,
    /// The `Name` tag; empty means no Name tag.
    #[serde(default)]
    pub name: String,
    /// The address reported as `IPAddress`.
    #[serde(default = "default_ip")]
    pub ip_address: String,
    /// The host name reported as `ComputerName`; derived from the address when empty.
    #[serde(default)]
    pub computer_name: String,
    /// The operating-system family.
    #[serde(default)]
    pub platform_type: PlatformType,
    /// The distribution name, e.g. `Amazon Linux`.
    #[serde(default = "default_platform_name")]
    pub platform_name: String,
    /// The distribution version, e.g. `2023`.
    #[serde(default = "default_platform_version")]
    pub platform_version: String,
    /// The reported agent version.
    #[serde(default = "default_agent_version")]
    pub agent_version: String,
    /// Whether the agent answers.
    #[serde(default)]
    pub ping_status: PingStatus,
    /// Further tags, matched by `tag:<key>` filters and targets.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_ip() -> String {
    "10.0.0.1".into()
}

fn default_platform_name() -> String {
    "Amazon Linux".into()
}

fn default_platform_version() -> String {
    "2023".into()
}

fn default_agent_version() -> String {
    DEFAULT_AGENT_VERSION.into()
}

impl Instance {
    /// The `n`th generated instance (from 1): id `i-0000000000000000n` in hex, Name tag
    /// `node-n`, address `10.0.0.n` counting on into the next octets past 255.
    pub fn numbered(n: u32) -> Instance {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)).wrapping_add(n));
        let mut instance = Instance {
            id: format!("i-{n:017x}"),
            name: format!("node-{n}"),
            ip_address: ip.to_string(),
            computer_name: String::new(),
            platform_type: PlatformType::Linux,
            platform_name: default_platform_name(),
            platform_version: default_platform_version(),
            agent_version: default_agent_version(),
            ping_status: PingStatus::Online,
            tags: BTreeMap::new(),
        };
        instance.fill_defaults();
        instance
    }

    /// Instances 1 to `count` as made by [`Instance::numbered`].
    pub fn numbered_range(count: u32) -> Vec<Instance> {
        (1..=count).map(Instance::numbered).collect()
    }

    /// The same instance with a different ping status.
    pub fn with_ping_status(mut self, status: PingStatus) -> Instance {
        self.ping_status = status;
        self
    }

    /// The same instance with a different platform.
    pub fn with_platform(mut self, platform: PlatformType) -> Instance {
        self.platform_type = platform;
        self
    }

    /// The value of tag `key`, counting the Name tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        if key == "Name" && !self.name.is_empty() {
            return Some(&self.name);
        }
        self.tags.get(key).map(String::as_str)
    }

    fn fill_defaults(&mut self) {
        if self.computer_name.is_empty() {
            self.computer_name = format!(
                "ip-{}.ec2.internal",
                self.ip_address.replace(['.', ':'], "-")
            );
        }
    }
}

/// The file accepted by `--instances-file`: `{"instances": [...]}` or `[[instances]]` in TOML.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstancesFile {
    instances: Vec<Instance>,
}

/// Reads instances from a `.json` or `.toml` file.
pub fn load_instances(path: &Path) -> Result<Vec<Instance>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadInstances {
        path: path.to_owned(),
        source,
    })?;
    let parsed: Result<InstancesFile, String> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| e.to_string()),
        Some("toml") => toml::from_str(&text).map_err(|e| e.to_string()),
        _ => Err("file name must end in .json or .toml".into()),
    };
    let mut instances = parsed
        .map_err(|message| Error::ParseInstances {
            path: path.to_owned(),
            message,
        })?
        .instances;
    instances.iter_mut().for_each(Instance::fill_defaults);
    Ok(instances)
}

/// Whether `id` matches the service's instance id pattern.
pub(crate) fn is_instance_id(id: &str) -> bool {
    let word = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if let Some(rest) = id.strip_prefix("i-") {
        return (rest.len() == 8 || rest.len() == 17) && word(rest);
    }
    if let Some(rest) = id.strip_prefix("mi-") {
        return rest.len() == 17 && word(rest);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_instances_are_deterministic() {
        let third = Instance::numbered(3);
        assert_eq!(third.id, "i-00000000000000003");
        assert_eq!(third.name, "node-3");
        assert_eq!(third.ip_address, "10.0.0.3");
        assert_eq!(third.computer_name, "ip-10-0-0-3.ec2.internal");
        assert_eq!(Instance::numbered(300).ip_address, "10.0.1.44");
        assert!(is_instance_id(&Instance::numbered(10_000).id));
    }

    #[test]
    fn access_keys_parse_with_and_without_tokens() {
        let plain = Credentials::parse("AKID:secret").unwrap();
        assert_eq!(plain.session_token, None);
        let with_token = Credentials::parse("AKID:secret:tok").unwrap();
        assert_eq!(with_token.session_token.as_deref(), Some("tok"));
        assert!(Credentials::parse("AKID").is_err());
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let text = format!("{:?}", Credentials::default());
        assert!(!text.contains(DEFAULT_SECRET_ACCESS_KEY));
    }

    #[test]
    fn instance_files_parse_in_toml() {
        let file: InstancesFile = toml::from_str(
            "[[instances]]\nid = \"i-0123456789abcdef0\"\nname = \"web\"\nping_status = \"ConnectionLost\"\n",
        )
        .unwrap();
        assert_eq!(file.instances[0].ping_status, PingStatus::ConnectionLost);
        assert_eq!(file.instances[0].platform_type, PlatformType::Linux);
    }
}
