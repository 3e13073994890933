//! Platform detection over any transport, in one round trip.
//!
//! Train runs a command per question (uname, then os-release, then ...), and
//! over SSM each round trip costs about a second. railbox sends one probe
//! that answers them all and maps the answer onto a family hierarchy:
//! `windows`; `unix` → `linux` → `debian`, `redhat`, `suse`, ...; `bsd`;
//! `darwin`. What the probe cannot place is `unknown`: it is never guessed.
//!
//! The probe is a POSIX shell script; a target whose shell is PowerShell
//! answers it with an error, and gets a PowerShell probe as a second round
//! trip.

use std::time::Duration;

use serde::Serialize;

use crate::session::{Session, SessionError};

/// What a target runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// Short name, such as `debian`, `ubuntu`, `amazon`, `freebsd`, `mac_os_x`,
    /// `windows`, or `unknown`.
    pub name: String,
    /// Families from the most specific up, such as `["debian", "linux", "unix"]`.
    pub families: Vec<String>,
    /// Release, such as `12` or `10.0.20348`; empty when the target does not say.
    pub release: String,
    /// Machine architecture, such as `x86_64`; empty when the target does not say.
    pub arch: String,
    /// Kernel name and release, such as `Linux 6.1.0-18-amd64`.
    pub kernel: String,
}

impl Platform {
    /// Whether the platform is in `family` (or is called that).
    pub fn is(&self, family: &str) -> bool {
        self.name == family || self.families.iter().any(|f| f == family)
    }
}

/// How long the probe may take on the target.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The first line of every answer, so that other output is not mistaken for one.
const MARK: &str = "railbox-platform-1";

/// The POSIX probe: kernel, release and machine from uname, then os-release
/// (or macOS's sw_vers).
const SH_PROBE: &str = r#"echo railbox-platform-1
echo "kernel=$(uname -s 2>/dev/null)"
echo "kernel_release=$(uname -r 2>/dev/null)"
echo "arch=$(uname -m 2>/dev/null)"
if command -v sw_vers >/dev/null 2>&1; then echo "macos=$(sw_vers -productVersion 2>/dev/null)"; fi
for f in /etc/os-release /usr/lib/os-release; do if [ -r "$f" ]; then echo "--os-release"; cat "$f"; break; fi; done
"#;

/// The PowerShell probe.
const POWERSHELL_PROBE: &str = r#"Write-Output 'railbox-platform-1'
Write-Output 'kernel=Windows_NT'
Write-Output ('kernel_release=' + [Environment]::OSVersion.Version.ToString())
Write-Output ('arch=' + $env:PROCESSOR_ARCHITECTURE)
"#;

/// Detect the platform of the target behind `session`.
pub async fn detect(session: &mut Session) -> Result<Platform, SessionError> {
    let out = session.run(SH_PROBE, PROBE_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.lines().next().map(str::trim) == Some(MARK) {
        return Ok(parse(&text));
    }
    let out = session.run(POWERSHELL_PROBE, PROBE_TIMEOUT).await?;
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Map a probe's answer to a platform.
pub fn parse(answer: &str) -> Platform {
    let mut fields = Vec::new();
    let mut os_release = Vec::new();
    let mut in_os_release = false;
    for line in answer.lines().skip_while(|l| l.trim() != MARK).skip(1) {
        let line = line.trim_end_matches('\r');
        if line == "--os-release" {
            in_os_release = true;
        } else if let Some((key, value)) = line.split_once('=') {
            let value = unquote(value.trim());
            if in_os_release {
                os_release.push((key.trim().to_string(), value));
            } else {
                fields.push((key.trim().to_string(), value));
            }
        }
    }
    let get = |list: &[(String, String)], key: &str| {
        list.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let kernel_name = get(&fields, "kernel");
    let kernel_release = get(&fields, "kernel_release");
    let arch = normalize_arch(&get(&fields, "arch"));
    let kernel = format!("{kernel_name} {kernel_release}").trim().to_string();
    let platform = |name: &str, families: &[&str], release: String| Platform {
        name: name.to_string(),
        families: families.iter().map(|f| f.to_string()).collect(),
        release,
        arch: arch.clone(),
        kernel: kernel.clone(),
    };
    match kernel_name.as_str() {
        "Linux" => {
            let id = get(&os_release, "ID").to_ascii_lowercase();
            let like = get(&os_release, "ID_LIKE").to_ascii_lowercase();
            let release = get(&os_release, "VERSION_ID");
            let (name, family) = linux_distribution(&id, &like);
            match family {
                Some(family) => platform(&name, &[family, "linux", "unix"], release),
                None => platform(&name, &["linux", "unix"], release),
            }
        }
        "Darwin" => platform(
            "mac_os_x",
            &["darwin", "bsd", "unix"],
            get(&fields, "macos"),
        ),
        "FreeBSD" | "OpenBSD" | "NetBSD" | "DragonFly" => platform(
            &kernel_name.to_ascii_lowercase(),
            &["bsd", "unix"],
            kernel_release.clone(),
        ),
        "Windows_NT" => platform("windows", &["windows"], kernel_release.clone()),
        _ => platform("unknown", &[], String::new()),
    }
}

/// The name and family of a Linux distribution from os-release's `ID` and
/// `ID_LIKE`; a distribution neither names is `unknown` within `linux`.
fn linux_distribution(id: &str, like: &str) -> (String, Option<&'static str>) {
    let family_of = |id: &str| -> Option<&'static str> {
        Some(match id {
            "debian" | "ubuntu" | "linuxmint" | "raspbian" | "kali" | "pop" | "elementary" => {
                "debian"
            }
            "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "scientific" | "fedora" => "redhat",
            "amzn" => "amazon",
            "sles" | "sled" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "suse",
            "alpine" => "alpine",
            "arch" | "manjaro" => "arch",
            "gentoo" => "gentoo",
            _ => return None,
        })
    };
    let name = match id {
        "amzn" => "amazon".to_string(),
        "rhel" => "redhat".to_string(),
        "ol" => "oracle".to_string(),
        "" => "unknown".to_string(),
        other => other.to_string(),
    };
    if let Some(family) = family_of(id) {
        return (name, Some(family));
    }
    // A distribution that declares what it is like, such as a Debian
    // derivative, is placed there; one that declares nothing is not.
    let family = like.split_whitespace().find_map(family_of);
    let name = if family.is_some() {
        name
    } else {
        "unknown".into()
    };
    (name, family)
}

fn unquote(value: &str) -> String {
    let stripped = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    stripped.to_string()
}

fn normalize_arch(arch: &str) -> String {
    match arch {
        "AMD64" | "amd64" => "x86_64".into(),
        "ARM64" | "arm64" => "aarch64".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(os_release: &str) -> Platform {
        parse(&format!(
            "{MARK}\nkernel=Linux\nkernel_release=6.1.0-18-amd64\narch=x86_64\n--os-release\n{os_release}"
        ))
    }

    #[test]
    fn linux_distributions_land_in_their_families() {
        let debian =
            linux("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(debian.name, "debian");
        assert_eq!(debian.families, ["debian", "linux", "unix"]);
        assert_eq!(debian.release, "12");
        assert_eq!(debian.arch, "x86_64");
        assert_eq!(debian.kernel, "Linux 6.1.0-18-amd64");

        let cases = [
            (
                "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"",
                "ubuntu",
                "debian",
            ),
            (
                "ID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.3\"",
                "redhat",
                "redhat",
            ),
            (
                "ID=\"amzn\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"2023\"",
                "amazon",
                "amazon",
            ),
            ("ID=alpine\nVERSION_ID=3.19.1", "alpine", "alpine"),
            (
                "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"",
                "opensuse-leap",
                "suse",
            ),
            ("ID=\"ol\"\nID_LIKE=\"fedora\"", "oracle", "redhat"),
            ("ID=devuan\nID_LIKE=debian", "devuan", "debian"),
        ];
        for (os_release, name, family) in cases {
            let p = linux(os_release);
            assert_eq!(
                (p.name.as_str(), p.families[0].as_str()),
                (name, family),
                "{os_release}"
            );
            assert!(p.is("linux") && p.is("unix"));
        }
    }

    #[test]
    fn an_unknown_distribution_is_linux_and_nothing_more() {
        let p = linux("ID=plan10\nVERSION_ID=1\n");
        assert_eq!(p.name, "unknown");
        assert_eq!(p.families, ["linux", "unix"]);
        let bare = linux("");
        assert_eq!(bare.name, "unknown");
        assert_eq!(bare.families, ["linux", "unix"]);
    }

    #[test]
    fn other_kernels_are_placed_or_called_unknown() {
        let mac = parse(&format!(
            "{MARK}\nkernel=Darwin\nkernel_release=23.4.0\narch=arm64\nmacos=14.4.1\n"
        ));
        assert_eq!(
            (mac.name.as_str(), mac.release.as_str()),
            ("mac_os_x", "14.4.1")
        );
        assert_eq!(mac.families, ["darwin", "bsd", "unix"]);
        assert_eq!(mac.arch, "aarch64");

        let bsd = parse(&format!(
            "{MARK}\nkernel=FreeBSD\nkernel_release=14.0-RELEASE\narch=amd64\n"
        ));
        assert_eq!(
            (bsd.name.as_str(), bsd.release.as_str()),
            ("freebsd", "14.0-RELEASE")
        );
        assert!(bsd.is("bsd") && !bsd.is("linux"));

        let windows = parse(&format!(
            "{MARK}\r\nkernel=Windows_NT\r\nkernel_release=10.0.20348.0\r\narch=AMD64\r\n"
        ));
        assert_eq!(windows.name, "windows");
        assert_eq!(windows.families, ["windows"]);
        assert_eq!(
            (windows.release.as_str(), windows.arch.as_str()),
            ("10.0.20348.0", "x86_64")
        );

        let haiku = parse(&format!(
            "{MARK}\nkernel=Haiku\nkernel_release=1\narch=x86_64\n"
        ));
        assert_eq!(haiku.name, "unknown");
        assert!(haiku.families.is_empty());
        assert_eq!(parse("command not found").name, "unknown");
    }

    #[test]
    fn output_before_the_mark_is_ignored() {
        let p = parse(&format!(
            "kernel=Darwin\nmotd banner\n{MARK}\nkernel=Linux\n--os-release\nID=debian\n"
        ));
        assert_eq!(p.name, "debian");
    }
}
