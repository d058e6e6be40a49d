//! Rendering for people (table), tools (JSON is serde) and CI systems (JUnit XML).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;

use openwatch_common::domain::FindingStatus;
use openwatch_engine::eval::Tally;
use openwatch_engine::rules::{Rule, RuleSet};
use openwatch_engine::scan::ScanReport;

/// Prints a line on standard output.
pub fn say(text: &str) {
    println!("{text}");
}

/// Prints a line on standard error.
pub fn say_err(text: &str) {
    eprintln!("openwatch: {text}");
}

fn percent(tally: &Tally) -> String {
    tally.score().map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1}%"))
}

fn tally_line(tally: &Tally) -> String {
    format!(
        "{:>7}  pass {:>3}  fail {:>3}  error {:>3}  n/a {:>3}  manual {:>3}",
        percent(tally),
        tally.pass,
        tally.fail,
        tally.error,
        tally.not_applicable,
        tally.manual
    )
}

/// The readable report: platform, scores, then failures and errors with evidence.
pub fn table(target: &str, report: &ScanReport, all: bool) -> String {
    let mut out = String::new();
    let platform = report.platform.as_ref().map_or("unknown platform", |p| p.pretty_name.as_str());
    let privilege = if report.privileged { "as root" } else { "unprivileged" };
    let _ = writeln!(out, "OpenWatch scan of {target}: {platform} ({privilege})");
    let t = &report.timings;
    let _ = writeln!(
        out,
        "time: connect {:.0} ms, auth {:.0} ms, remote {:.0} ms, evaluate {:.1} ms; script {} B, output {} B\n",
        t.connect_ms, t.auth_ms, t.exec_ms, t.evaluate_ms, report.script_bytes, report.output_bytes
    );
    let _ = writeln!(out, "score            {}", tally_line(&report.score.overall));
    for (severity, tally) in &report.score.by_severity {
        let _ = writeln!(out, "  {:<14} {}", severity.as_str(), tally_line(tally));
    }
    for (framework, tally) in &report.score.by_framework {
        let _ = writeln!(out, "  {framework:<14} {}", tally_line(tally));
    }
    let mut shown: Vec<_> = report
        .results
        .iter()
        .filter(|r| all || matches!(r.status, FindingStatus::Fail | FindingStatus::Error))
        .collect();
    shown.sort_by_key(|r| (r.status != FindingStatus::Fail, r.severity, r.rule_id.clone()));
    for result in shown {
        let _ = writeln!(
            out,
            "\n[{}] {} ({})",
            result.status.as_str().to_uppercase(),
            result.rule_id,
            result.severity
        );
        if let Some(reason) = &result.reason {
            let _ = writeln!(out, "  reason:   {reason}");
        }
        let _ = writeln!(out, "  source:   {}", result.evidence.source);
        if let Some(expected) = &result.evidence.expected {
            let _ = writeln!(out, "  expected: {expected}");
        }
        if let Some(actual) = &result.evidence.actual {
            let _ = writeln!(out, "  actual:   {actual}");
        }
        for line in result.evidence.excerpt.lines().take(8) {
            let _ = writeln!(out, "  | {line}");
        }
    }
    out
}

fn xml(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per rule; fail → `<failure>`, error → `<error>`,
/// not applicable and manual → `<skipped>`.
pub fn junit(target: &str, report: &ScanReport) -> String {
    let tally = &report.score.overall;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"openwatch {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
        xml(target),
        report.results.len(),
        tally.fail,
        tally.error,
        tally.not_applicable + tally.manual
    );
    for result in &report.results {
        let _ =
            write!(out, "  <testcase classname=\"{}\" name=\"{}\"", result.severity, xml(&result.rule_id));
        let detail = format!(
            "source: {}\nexpected: {}\nactual: {}\n{}",
            result.evidence.source,
            result.evidence.expected.as_deref().unwrap_or("-"),
            result.evidence.actual.as_deref().unwrap_or("-"),
            result.evidence.excerpt
        );
        let reason = result.reason.as_deref().unwrap_or("");
        let _ = match result.status {
            FindingStatus::Pass => writeln!(out, "/>"),
            FindingStatus::Fail => {
                writeln!(out, "><failure message=\"failed\">{}</failure></testcase>", xml(&detail))
            }
            FindingStatus::Error => {
                writeln!(out, "><error message=\"{}\">{}</error></testcase>", xml(reason), xml(&detail))
            }
            FindingStatus::NotApplicable | FindingStatus::Manual => {
                writeln!(out, "><skipped message=\"{}: {}\"/></testcase>", result.status, xml(reason))
            }
        };
    }
    out.push_str("</testsuite>\n");
    out
}

/// `rules list`.
pub fn print_rule_list(rules: &RuleSet) {
    for rule in rules.rules.values() {
        let platforms: Vec<String> = rule
            .file
            .platforms
            .iter()
            .map(|p| {
                format!(
                    "{}{}",
                    p.family,
                    p.min_version.as_deref().map(|v| format!(">={v}")).unwrap_or_default()
                )
            })
            .collect();
        let frameworks: Vec<&str> = rule.file.references.keys().map(String::as_str).collect();
        say(&format!(
            "{:<50} {:<8} {:<12} {:<30} {}",
            rule.file.id,
            rule.file.severity.as_str(),
            rule.file.category,
            platforms.join(","),
            frameworks.join(",")
        ));
    }
    say_err(&format!("{} rules", rules.rules.len()));
}

/// `rules show ID`: the rule as loaded, with its file.
pub fn print_rule(rule: &Rule) -> anyhow::Result<()> {
    say(&format!("# {}", rule.path.display()));
    say(&std::fs::read_to_string(&rule.path)?);
    Ok(())
}
