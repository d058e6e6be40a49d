//! Rendering a scan report for people (text) or tools (JSON).
#![allow(clippy::print_stdout)]

use openwatch_common::domain::FindingStatus;
use openwatch_engine::eval::Tally;
use openwatch_engine::scan::ScanReport;

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

/// Prints the report as one JSON document.
pub fn print_json(report: &ScanReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    Ok(())
}

/// Prints a readable report: platform, scores, then failures and errors with evidence.
pub fn print_text(target: &str, report: &ScanReport, all: bool) {
    let platform = report.platform.as_ref().map_or("unknown platform", |p| p.pretty_name.as_str());
    println!(
        "OpenWatch scan of {target}: {platform}{}",
        if report.privileged { " (as root)" } else { " (unprivileged)" }
    );
    println!(
        "time: connect {:.0} ms, auth {:.0} ms, remote {:.0} ms, evaluate {:.1} ms; script {} B, output {} B\n",
        report.timings.connect_ms,
        report.timings.auth_ms,
        report.timings.exec_ms,
        report.timings.evaluate_ms,
        report.script_bytes,
        report.output_bytes
    );
    println!("score      {}", tally_line(&report.score.overall));
    for (severity, tally) in &report.score.by_severity {
        println!("  {:<8} {}", severity.as_str(), tally_line(tally));
    }
    for (framework, tally) in &report.score.by_framework {
        println!("  {framework:<14} {}", tally_line(tally));
    }
    let mut shown: Vec<_> = report
        .results
        .iter()
        .filter(|r| all || matches!(r.status, FindingStatus::Fail | FindingStatus::Error))
        .collect();
    shown.sort_by_key(|r| (r.status != FindingStatus::Fail, r.severity, r.rule_id.clone()));
    for result in shown {
        println!(
            "\n[{}] {} ({})",
            result.status.as_str().to_uppercase(),
            result.rule_id,
            result.severity.as_str()
        );
        if let Some(reason) = &result.reason {
            println!("  reason:   {reason}");
        }
        println!("  source:   {}", result.evidence.source);
        if let Some(expected) = &result.evidence.expected {
            println!("  expected: {expected}");
        }
        if let Some(actual) = &result.evidence.actual {
            println!("  actual:   {actual}");
        }
        for line in result.evidence.excerpt.lines().take(8) {
            println!("  | {line}");
        }
    }
}
