//! Which instance a target URL means, and whether it can take commands.
//!
//! The URL's host is an instance id (`i-` with 8 or 17 hex digits, `mi-` with
//! 17), an IP address, or the value of a `Name` tag. Ids and names are looked
//! up with one filtered DescribeInstanceInformation call; addresses have no
//! filter, so their lookup pages through the instances until one matches.
//! The answer is kept for the session: it also picks the document.

use std::net::IpAddr;

use crate::api::{InstanceInfo, POWERSHELL_DOCUMENT, SHELL_DOCUMENT};
use crate::error::Error;

/// What the URL's host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// An instance id.
    Id(String),
    /// An address the agent reports.
    Ip(IpAddr),
    /// The value of the `Name` tag.
    Name(String),
}

impl Wanted {
    /// Read the URL's host, percent-decoded.
    pub fn parse(host: &str) -> Result<Wanted, Error> {
        let host = percent_decode(host);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.is_empty() {
            return Err(Error::InvalidTarget(
                "awsssm:// needs an instance id, IP address or Name tag as its host".into(),
            ));
        }
        if is_instance_id(bare) {
            return Ok(Wanted::Id(bare.to_string()));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Wanted::Ip(ip));
        }
        Ok(Wanted::Name(host))
    }

    /// The DescribeInstanceInformation filter that finds it, if there is one.
    pub fn filter(&self) -> Option<(&'static str, String)> {
        match self {
            Wanted::Id(id) => Some(("InstanceIds", id.clone())),
            Wanted::Name(name) => Some(("tag:Name", name.clone())),
            Wanted::Ip(_) => None,
        }
    }

    /// Whether a listed instance is this one.
    pub fn matches(&self, info: &InstanceInfo) -> bool {
        match self {
            Wanted::Id(id) => info.instance_id == *id,
            Wanted::Ip(ip) => info.ip_address.parse::<IpAddr>().is_ok_and(|a| a == *ip),
            // The tag filter already matched; the listing carries no tags.
            Wanted::Name(_) => true,
        }
    }

    /// How to name it in messages.
    pub fn describe(&self) -> String {
        match self {
            Wanted::Id(id) => format!("instance {id}"),
            Wanted::Ip(ip) => format!("IP address {ip}"),
            Wanted::Name(name) => format!("Name tag {name:?}"),
        }
    }
}

/// Whether `s` is an instance id as SSM writes it.
pub fn is_instance_id(s: &str) -> bool {
    let hex = |h: &str| h.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = s.strip_prefix("i-") {
        (rest.len() == 8 || rest.len() == 17) && hex(rest)
    } else if let Some(rest) = s.strip_prefix("mi-") {
        rest.len() == 17 && hex(rest)
    } else {
        false
    }
}

/// The instance a session talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// Windows, Linux or MacOS, as the agent reports it.
    pub platform: String,
}

impl Instance {
    /// Whether commands run in PowerShell rather than a Unix shell.
    pub fn is_windows(&self) -> bool {
        self.platform.eq_ignore_ascii_case("windows")
    }

    /// The document for this platform.
    pub fn default_document(&self) -> &'static str {
        if self.is_windows() {
            POWERSHELL_DOCUMENT
        } else {
            SHELL_DOCUMENT
        }
    }
}

/// Pick the one Online instance among those the lookup found.
pub fn choose(wanted: &Wanted, found: &[InstanceInfo], region: &str) -> Result<Instance, Error> {
    let matching: Vec<&InstanceInfo> = found.iter().filter(|i| wanted.matches(i)).collect();
    match matching.as_slice() {
        [] => Err(Error::NotFound(format!(
            "no managed instance with {} in {region} (DescribeInstanceInformation found none; \
             is the SSM agent registered and the region right?)",
            wanted.describe()
        ))),
        [one] if one.ping_status == "Online" => Ok(Instance {
            id: one.instance_id.clone(),
            platform: one.platform_type.clone(),
        }),
        [one] => Err(Error::Io(format!(
            "{} ({}) is {}, not Online: its SSM agent cannot take commands now",
            wanted.describe(),
            one.instance_id,
            if one.ping_status.is_empty() {
                "of unknown status"
            } else {
                &one.ping_status
            }
        ))),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|i| format!("{} ({})", i.instance_id, i.ping_status))
                .collect();
            Err(Error::InvalidTarget(format!(
                "{} matches {} instances: {}; name one by its id",
                wanted.describe(),
                several.len(),
                list.join(", ")
            )))
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, ping: &str, ip: &str) -> InstanceInfo {
        InstanceInfo {
            instance_id: id.into(),
            ping_status: ping.into(),
            platform_type: "Linux".into(),
            ip_address: ip.into(),
            ..InstanceInfo::default()
        }
    }

    #[test]
    fn hosts_are_told_apart() {
        let id = "i-0123456789abcdef0";
        assert_eq!(Wanted::parse(id).unwrap(), Wanted::Id(id.into()));
        assert_eq!(
            Wanted::parse("i-0123abcd").unwrap(),
            Wanted::Id("i-0123abcd".into())
        );
        assert_eq!(
            Wanted::parse("mi-0123456789abcdef0").unwrap(),
            Wanted::Id("mi-0123456789abcdef0".into())
        );
        assert_eq!(
            Wanted::parse("10.0.0.7").unwrap(),
            Wanted::Ip("10.0.0.7".parse().unwrap())
        );
        assert_eq!(
            Wanted::parse("[fd00::7]").unwrap(),
            Wanted::Ip("fd00::7".parse().unwrap())
        );
        assert_eq!(
            Wanted::parse("web%20one").unwrap(),
            Wanted::Name("web one".into())
        );
        assert_eq!(
            Wanted::parse("i-xyz").unwrap(),
            Wanted::Name("i-xyz".into())
        );
        assert!(Wanted::parse("").is_err());
    }

    #[test]
    fn the_one_online_match_is_chosen() {
        let found = [
            info("i-1", "Online", "10.0.0.1"),
            info("i-2", "Online", "10.0.0.2"),
        ];
        let wanted = Wanted::Ip("10.0.0.2".parse().unwrap());
        let got = choose(&wanted, &found, "us-east-1").unwrap();
        assert_eq!(got.id, "i-2");
        assert_eq!(got.default_document(), SHELL_DOCUMENT);
    }

    #[test]
    fn no_match_is_not_found_and_names_the_region() {
        let err = choose(&Wanted::Name("web".into()), &[], "eu-west-1").unwrap_err();
        assert!(matches!(&err, Error::NotFound(m) if m.contains("eu-west-1") && m.contains("web")));
    }

    #[test]
    fn an_offline_instance_is_refused_with_its_status() {
        let found = [info("i-1", "ConnectionLost", "")];
        let err = choose(&Wanted::Id("i-1".into()), &found, "r").unwrap_err();
        assert!(matches!(&err, Error::Io(m) if m.contains("ConnectionLost")));
    }

    #[test]
    fn several_matches_are_listed() {
        let found = [info("i-1", "Online", ""), info("i-2", "Inactive", "")];
        let err = choose(&Wanted::Name("web".into()), &found, "r").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTarget(m) if m.contains("i-1 (Online)")
            && m.contains("i-2 (Inactive)"))
        );
    }

    #[test]
    fn windows_gets_powershell() {
        let i = Instance {
            id: "i-1".into(),
            platform: "Windows".into(),
        };
        assert_eq!(i.default_document(), POWERSHELL_DOCUMENT);
    }
}
