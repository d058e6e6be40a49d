//! Rule loading: strictness, locations, variables.

use super::*;

const GOOD: &str = r#"id: sshd_max_auth_tries
title: SSH limits authentication attempts
description: MaxAuthTries bounds password guessing per connection.
rationale: Fewer attempts per connection slow brute force down.
severity: medium
category: ssh
tags: [ssh]
references:
  cis-debian12: ["5.1.16"]
  stig-rhel9: ["RHEL-09-255000"]
platforms:
  - family: debian
    min_version: "12"
variables:
  max_tries:
    default: 4
    overrides:
      stig-rhel9: 3
checks:
  - type: sshd_config
    key: maxauthtries
    expect:
      max: "{{ max_tries }}"
"#;

fn parse(text: &str) -> Result<Rule, LoadError> {
    parse_rule(Path::new("rules/ssh/sshd_max_auth_tries.yml"), text)
}

#[test]
fn a_good_rule_loads_with_variables_per_framework() {
    let rule = parse(GOOD).unwrap();
    let max = |checks: &[ConditionalCheck]| match &checks[0].check {
        Check::SshdConfig(c) => c.expect.max,
        other => panic!("{other:?}"),
    };
    assert_eq!(max(rule.checks_for(None)), Some(4));
    assert_eq!(max(rule.checks_for(Some("cis-debian12"))), Some(4));
    assert_eq!(max(rule.checks_for(Some("stig-rhel9"))), Some(3));
}

#[test]
fn unknown_keys_are_errors_naming_line_and_field() {
    let typo = GOOD.replace("    key: maxauthtries", "    kee: maxauthtries");
    let error = parse(&typo).unwrap_err();
    assert!(error.message.contains("kee"), "{error}");
    assert!(error.line.is_some_and(|l| (21..=25).contains(&l)), "{error}");
    assert!(error.to_string().starts_with("rules/ssh/sshd_max_auth_tries.yml:"), "{error}");

    let top = GOOD.replace("category: ssh", "categroy: ssh");
    assert!(parse(&top).unwrap_err().message.contains("categroy"));
}

#[test]
fn wrong_types_and_values_are_errors() {
    let bad_severity = GOOD.replace("severity: medium", "severity: severe");
    assert!(parse(&bad_severity).unwrap_err().message.contains("severe"));
    let bad_number = GOOD.replace("default: 4", "default: [4]");
    assert!(parse(&bad_number).is_err());
    let unknown_var = GOOD.replace("{{ max_tries }}", "{{ max_try }}");
    assert!(parse(&unknown_var).unwrap_err().message.contains("max_try"));
}

#[test]
fn structural_rules_are_enforced() {
    assert!(
        parse(&GOOD.replace("id: sshd_max_auth_tries", "id: other"))
            .unwrap_err()
            .message
            .contains("file name")
    );
    let no_refs = GOOD.replace(
        "  cis-debian12: [\"5.1.16\"]\n  stig-rhel9: [\"RHEL-09-255000\"]\n",
        "  cis-debian12: []\n",
    );
    assert!(parse(&no_refs).is_err());
    let unsafe_path = GOOD.replace(
        "  - type: sshd_config\n    key: maxauthtries\n    expect:\n      max: \"{{ max_tries }}\"\n",
        "  - type: file_exists\n    path: /etc/$(reboot)\n",
    );
    assert!(parse(&unsafe_path).unwrap_err().message.contains("path"));
}

#[test]
fn rule_sets_load_from_a_directory_or_a_glob() {
    let dir = std::env::temp_dir().join(format!("openwatch-rules-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("ssh")).unwrap();
    std::fs::create_dir_all(dir.join("fixtures")).unwrap();
    std::fs::write(dir.join("ssh/sshd_max_auth_tries.yml"), GOOD).unwrap();
    std::fs::write(dir.join("fixtures/ignored.yml"), "not: a rule\n").unwrap();
    let all = RuleSet::load_dir(&dir).unwrap();
    assert_eq!(all.rules.len(), 1, "fixtures are not rules");
    let glob = RuleSet::load(&format!("{}/ssh/*.yml", dir.display())).unwrap();
    assert_eq!(glob.rules.len(), 1);
    let none = RuleSet::load(&format!("{}/kernel/*.yml", dir.display())).unwrap_err();
    assert!(
        none[0].to_string().contains("no rule file matches") || none[0].to_string().contains("No such file")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
