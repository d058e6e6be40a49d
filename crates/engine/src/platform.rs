//! Platform detection from `/etc/os-release`, and matching rules to platforms.
//!
//! Rules name a *family* (`debian`, `ubuntu`, `rhel`) and an optional version range. RHEL
//! rebuilds (Rocky, Alma, CentOS Stream, Oracle) belong to the `rhel` family through
//! `ID_LIKE`, so one rule covers them all.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A detected operating system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Platform {
    /// `ID` (e.g. `debian`, `ubuntu`, `rocky`).
    pub id: String,
    /// `ID_LIKE` entries (e.g. `rhel`, `centos`, `fedora`).
    pub id_like: Vec<String>,
    /// `VERSION_ID` (e.g. `12`, `22.04`, `9.4`).
    pub version_id: String,
    /// `PRETTY_NAME`, for reports.
    pub pretty_name: String,
}

/// Platform families rules are written for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Debian.
    Debian,
    /// Ubuntu.
    Ubuntu,
    /// Red Hat Enterprise Linux and its rebuilds (Rocky, Alma, CentOS, Oracle).
    Rhel,
}

impl Family {
    /// The spelling used in rule files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu",
            Family::Rhel => "rhel",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Platform {
    /// Parses the content of `/etc/os-release` (shell-style `KEY=value`, values optionally
    /// quoted). `None` without an `ID`.
    pub fn from_os_release(text: &str) -> Option<Platform> {
        let mut id = None;
        let mut id_like = Vec::new();
        let mut version_id = String::new();
        let mut pretty_name = String::new();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else { continue };
            let value = unquote(value.trim());
            match key.trim() {
                "ID" => id = Some(value.to_ascii_lowercase()),
                "ID_LIKE" => id_like = value.split_whitespace().map(str::to_ascii_lowercase).collect(),
                "VERSION_ID" => version_id = value,
                "PRETTY_NAME" => pretty_name = value,
                _ => {}
            }
        }
        Some(Platform { id: id?, id_like, version_id, pretty_name })
    }

    /// The family this platform belongs to, if it is one we write rules for.
    pub fn family(&self) -> Option<Family> {
        let is = |name: &str| self.id == name || self.id_like.iter().any(|like| like == name);
        match self.id.as_str() {
            "debian" => Some(Family::Debian),
            "ubuntu" => Some(Family::Ubuntu),
            _ if is("rhel")
                || is("centos")
                || self.id == "rocky"
                || self.id == "almalinux"
                || self.id == "ol" =>
            {
                Some(Family::Rhel)
            }
            // Debian derivatives other than Ubuntu are treated as Debian only when they say
            // so and are not Ubuntu-based.
            _ if is("ubuntu") => Some(Family::Ubuntu),
            _ if is("debian") => Some(Family::Debian),
            _ => None,
        }
    }
}

fn unquote(value: &str) -> String {
    let trimmed = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    trimmed.replace("\\\"", "\"").replace("\\$", "$").replace("\\\\", "\\")
}

/// Compares dotted numeric versions (`9.4` < `9.10`, `22.04` = `22.4`); non-numeric parts
/// compare as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-']);
    let mut right = b.split(['.', '-']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (Some(x), None) => {
                return if x.trim_start_matches('0').is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
            }
            (None, Some(y)) => {
                return if y.trim_start_matches('0').is_empty() { Ordering::Equal } else { Ordering::Less };
            }
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// A platform constraint of a rule: a family and an optional inclusive version range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    /// The family.
    pub family: Family,
    /// Lowest matching `VERSION_ID` (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Highest matching `VERSION_ID` (inclusive; `9` also matches `9.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
}

impl PlatformSpec {
    /// Whether `platform` satisfies this constraint.
    pub fn matches(&self, platform: &Platform) -> bool {
        if platform.family() != Some(self.family) {
            return false;
        }
        let version = platform.version_id.as_str();
        let at_least =
            self.min_version.as_deref().is_none_or(|min| compare_versions(version, min) != Ordering::Less);
        let at_most = self.max_version.as_deref().is_none_or(|max| {
            // `max_version: 9` covers every 9.x: compare only as many components as given.
            let components = max.split('.').count();
            let truncated: Vec<&str> = version.split('.').take(components).collect();
            compare_versions(&truncated.join("."), max) != Ordering::Greater
        });
        at_least && at_most
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROCKY: &str = r#"NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
"#;

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

    #[test]
    fn os_release_is_parsed_with_quotes_and_id_like() {
        let rocky = Platform::from_os_release(ROCKY).unwrap();
        assert_eq!(rocky.id, "rocky");
        assert_eq!(rocky.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(rocky.version_id, "9.4");
        assert_eq!(rocky.family(), Some(Family::Rhel));
        let debian = Platform::from_os_release(DEBIAN).unwrap();
        assert_eq!(debian.family(), Some(Family::Debian));
        assert_eq!(debian.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert!(Platform::from_os_release("NAME=x\n").is_none());
    }

    #[test]
    fn unknown_distributions_have_no_family() {
        let alpine = Platform::from_os_release("ID=alpine\nVERSION_ID=3.20.0\n").unwrap();
        assert_eq!(alpine.family(), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("9.10", "9.4"), Ordering::Greater);
        assert_eq!(compare_versions("22.04", "22.4"), Ordering::Equal);
        assert_eq!(compare_versions("24.04", "22.04"), Ordering::Greater);
        assert_eq!(compare_versions("9", "9.0"), Ordering::Equal);
    }

    #[test]
    fn version_ranges_include_minor_releases_of_the_maximum() {
        let rocky = Platform::from_os_release(ROCKY).unwrap();
        let rhel9 = PlatformSpec {
            family: Family::Rhel,
            min_version: Some("9".into()),
            max_version: Some("9".into()),
        };
        let rhel8 = PlatformSpec {
            family: Family::Rhel,
            min_version: Some("8".into()),
            max_version: Some("8".into()),
        };
        let debian = PlatformSpec { family: Family::Debian, min_version: None, max_version: None };
        assert!(rhel9.matches(&rocky));
        assert!(!rhel8.matches(&rocky));
        assert!(!debian.matches(&rocky));
    }
}
