//! Value expectations shared by the configuration checks.
//!
//! Every constraint that is set must hold. Text comparisons ignore ASCII case (sshd,
//! sysctl and most config keywords are case-insensitive); `matches` is a regular
//! expression applied as written. Numbers are compared as integers; a non-numeric value
//! under `min`/`max` fails (and says so in the evidence).

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Constraints on one configuration value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// One of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// None of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_one_of: Option<Vec<String>>,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// Integer lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Integer upper bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// For comma separated lists (ciphers, MACs): none of these items may appear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    /// Whether an unset value passes (the built-in default is compliant).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unset_passes: bool,
}

impl Expect {
    /// Rejects expectations that constrain nothing or carry an invalid pattern.
    pub fn validate(&self) -> Result<(), String> {
        let constraints = [
            self.equals.is_some(),
            self.one_of.is_some(),
            self.not_one_of.is_some(),
            self.matches.is_some(),
            self.min.is_some(),
            self.max.is_some(),
            self.excludes.is_some(),
        ];
        if !constraints.contains(&true) {
            return Err("`expect` sets no constraint".into());
        }
        if let Some(pattern) = &self.matches {
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid `matches` pattern: {e}"))?;
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(format!("`min` {min} is above `max` {max}"));
        }
        Ok(())
    }

    /// Whether `actual` (`None` = unset) satisfies every constraint.
    pub fn check(&self, actual: Option<&str>) -> bool {
        let Some(value) = actual.map(str::trim) else { return self.unset_passes };
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b.trim());
        if self.equals.as_deref().is_some_and(|e| !same(value, e)) {
            return false;
        }
        if self.one_of.as_ref().is_some_and(|set| !set.iter().any(|e| same(value, e))) {
            return false;
        }
        if self.not_one_of.as_ref().is_some_and(|set| set.iter().any(|e| same(value, e))) {
            return false;
        }
        if let Some(pattern) = &self.matches {
            match super::cached_regex(&format!("^(?:{pattern})$"), false) {
                Ok(re) if re.is_match(value) => {}
                _ => return false,
            }
        }
        if self.min.is_some() || self.max.is_some() {
            let Ok(number) = value.parse::<i64>() else { return false };
            if self.min.is_some_and(|min| number < min) || self.max.is_some_and(|max| number > max) {
                return false;
            }
        }
        if let Some(forbidden) = &self.excludes {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().any(|item| forbidden.iter().any(|f| same(item, f))) {
                return false;
            }
        }
        true
    }

    /// The expectation in words, for evidence.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = &self.equals {
            parts.push(format!("= {e}"));
        }
        if let Some(set) = &self.one_of {
            parts.push(format!("one of [{}]", set.join(", ")));
        }
        if let Some(set) = &self.not_one_of {
            parts.push(format!("none of [{}]", set.join(", ")));
        }
        if let Some(p) = &self.matches {
            parts.push(format!("matches /{p}/"));
        }
        if let Some(min) = self.min {
            parts.push(format!(">= {min}"));
        }
        if let Some(max) = self.max {
            parts.push(format!("<= {max}"));
        }
        if let Some(set) = &self.excludes {
            parts.push(format!("excludes [{}]", set.join(", ")));
        }
        if self.unset_passes {
            parts.push("(or unset)".into());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(yaml: &str) -> Expect {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn constraints_combine() {
        let e = expect("min: 1\nmax: 4\n");
        assert!(e.check(Some("4")));
        assert!(!e.check(Some("5")));
        assert!(!e.check(Some("0")));
        assert!(!e.check(Some("four")), "non-numbers fail numeric bounds");
        assert!(!e.check(None));
    }

    #[test]
    fn text_comparisons_ignore_case_and_lists_are_split() {
        assert!(expect("equals: no\n").check(Some("No")));
        assert!(expect("one_of: [no, prohibit-password]\n").check(Some("prohibit-password")));
        assert!(!expect("not_one_of: [yes]\n").check(Some("YES")));
        let weak = expect("excludes: [3des-cbc, aes128-cbc]\n");
        assert!(weak.check(Some("aes256-gcm@openssh.com,chacha20-poly1305@openssh.com")));
        assert!(!weak.check(Some("aes256-ctr,aes128-cbc")));
    }

    #[test]
    fn unset_values_fail_unless_allowed() {
        assert!(!expect("equals: x\n").check(None));
        assert!(expect("equals: x\nunset_passes: true\n").check(None));
    }

    #[test]
    fn validation_rejects_empty_and_bad_patterns() {
        assert!(Expect::default().validate().is_err());
        assert!(expect("matches: '('\n").validate().is_err());
        assert!(expect("min: 5\nmax: 1\n").validate().is_err());
        assert!(expect("matches: '[0-7]{3}'\n").validate().is_ok());
        assert!(serde_saphyr::from_str::<Expect>("equal: x\n").is_err(), "typos are errors");
    }
}
