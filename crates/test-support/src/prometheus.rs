//! A strict parser of the Prometheus text exposition format (0.0.4), so tests of `/metrics`
//! fail on malformed output rather than passing on a `contains`.
//!
//! Checked: `# HELP name text` and `# TYPE name type` lines (valid names, known types, at
//! most one of each per family, `TYPE` before the family's samples), metric and label
//! name charsets, label syntax with `\\`, `\"` and `\n` escapes, duplicate labels, numeric
//! values (`+Inf`, `-Inf`, `NaN` included), optional integer timestamps, duplicate
//! samples, `le` on histogram buckets and the trailing newline.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp: Option<i64>,
}

impl Sample {
    /// Whether every `(name, value)` in `labels` is on this sample.
    pub fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.labels.get(*k).is_some_and(|x| x == v))
    }
}

/// The first sample called `name` carrying `labels` (a subset match).
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| s.name == name && s.has_labels(labels))
}

/// The value of [`find`].
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    find(samples, name, labels).map(|s| s.value)
}

/// Parses `text`; the error names the 1-based line and what is wrong.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition must end with a newline".to_owned());
    }
    let mut samples = Vec::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut seen_families: HashSet<String> = HashSet::new();
    let mut seen_series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", index + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if let Some(rest) = comment.strip_prefix("HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                check_metric_name(name).map_err(at)?;
                check_help(help).map_err(at)?;
                if !helps.insert(name.to_owned()) {
                    return Err(at(format!("second HELP for {name}")));
                }
            } else if let Some(rest) = comment.strip_prefix("TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(at("TYPE needs exactly a name and a type".to_owned()));
                };
                check_metric_name(name).map_err(at)?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown metric type {kind:?}")));
                }
                if seen_families.contains(name) {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(at(format!("second TYPE for {name}")));
                }
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &types);
        if types.get(&family).is_some_and(|t| t == "histogram")
            && sample.name.ends_with("_bucket")
            && !sample.labels.contains_key("le")
        {
            return Err(at("histogram bucket without an `le` label".to_owned()));
        }
        seen_families.insert(family);
        if !seen_series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("duplicate sample".to_owned()));
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// The family a sample belongs to: itself, or the histogram/summary it is a part of.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram" || t == "summary")
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok { Ok(()) } else { Err(format!("invalid metric name {name:?}")) }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(format!("invalid label name {name:?}")) }
}

fn check_help(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("invalid escape in HELP (only \\\\ and \\n)".to_owned());
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("sample without a value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("expected whitespace before the value".to_owned());
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("sample without a value")?)?;
    let timestamp = match fields.next() {
        None => None,
        Some(ts) => Some(ts.parse::<i64>().map_err(|_| format!("invalid timestamp {ts:?}"))?),
    };
    if fields.next().is_some() {
        return Err("trailing garbage after the sample".to_owned());
    }
    Ok(Sample { name: name.to_owned(), labels, value, timestamp })
}

/// Parses `a="x",b="y"}` (after the `{`) into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without `=`")?;
        let name = s[..eq].trim();
        check_label_name(name)?;
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or_else(|| format!("value of label {name} is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => {
                        return Err(format!("invalid escape {:?} in label {name}", other.map(|(_, c)| c)));
                    }
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".to_owned());
        }
    }
}

fn parse_value(raw: &str) -> Result<f64, String> {
    match raw {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if raw.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            && raw.chars().any(|c| c.is_ascii_digit()) =>
        {
            raw.parse().map_err(|_| format!("invalid value {raw:?}"))
        }
        _ => Err(format!("invalid value {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"# HELP openwatch_scans_total Scans that reached a status.
# TYPE openwatch_scans_total counter
openwatch_scans_total{status="completed",trigger="manual"} 3
openwatch_scans_total{status="failed",trigger="manual",} 0 1700000000000
# A free comment
# TYPE openwatch_http_request_duration_seconds histogram
openwatch_http_request_duration_seconds_bucket{route="/health",le="0.005"} 1
openwatch_http_request_duration_seconds_bucket{route="/health",le="+Inf"} 2
openwatch_http_request_duration_seconds_sum{route="/health"} 0.0123
openwatch_http_request_duration_seconds_count{route="/health"} 2
# TYPE openwatch_compliance_score gauge
openwatch_compliance_score{host_id="a \"quoted\" \\ name\nline"} NaN
openwatch_build_info{service="scan-worker",version="0.1.0"} 1e0
plain_metric -Inf

"#;

    #[test]
    fn valid_exposition_parses() {
        let samples = parse_exposition(VALID).unwrap();
        assert_eq!(samples.len(), 9);
        assert_eq!(value(&samples, "openwatch_scans_total", &[("status", "completed")]), Some(3.0));
        let failed = find(&samples, "openwatch_scans_total", &[("status", "failed")]).unwrap();
        assert_eq!(failed.timestamp, Some(1_700_000_000_000));
        let inf =
            find(&samples, "openwatch_http_request_duration_seconds_bucket", &[("le", "+Inf")]).unwrap();
        assert_eq!(inf.value, 2.0);
        let score = find(&samples, "openwatch_compliance_score", &[]).unwrap();
        assert!(score.value.is_nan());
        assert_eq!(score.labels["host_id"], "a \"quoted\" \\ name\nline");
        assert_eq!(value(&samples, "plain_metric", &[]), Some(f64::NEG_INFINITY));
        assert!(parse_exposition("").unwrap().is_empty());
    }

    #[test]
    fn garbage_is_rejected() {
        let cases = [
            ("no newline", "a 1"),
            ("bad name", "1abc 1\n"),
            ("dash in name", "a-b 1\n"),
            ("bad value", "a one\n"),
            ("rust infinity", "a inf\n"),
            ("missing value", "a\n"),
            ("missing value after labels", "a{x=\"1\"}\n"),
            ("unquoted label", "a{x=1} 1\n"),
            ("unterminated label", "a{x=\"1} 1\n"),
            ("bad escape", "a{x=\"\\t\"} 1\n"),
            ("bad label name", "a{1x=\"1\"} 1\n"),
            ("duplicate label", "a{x=\"1\",x=\"2\"} 1\n"),
            ("missing comma", "a{x=\"1\" y=\"2\"} 1\n"),
            ("bad timestamp", "a 1 12.5\n"),
            ("trailing garbage", "a 1 2 3\n"),
            ("unknown type", "# TYPE a countr\n"),
            ("type without kind", "# TYPE a\n"),
            ("bad help name", "# HELP a-b text\n"),
            ("bad help escape", "# HELP a te\\xt\n"),
            ("second type", "# TYPE a counter\n# TYPE a gauge\n"),
            ("type after samples", "a 1\n# TYPE a counter\n"),
            ("duplicate sample", "a{x=\"1\"} 1\na{x=\"1\"} 2\n"),
            ("bucket without le", "# TYPE h histogram\nh_bucket{x=\"1\"} 1\n"),
            ("html", "<html><body>oops</body></html>\n"),
        ];
        for (what, text) in cases {
            assert!(parse_exposition(text).is_err(), "{what} should be rejected: {text:?}");
        }
        let err = parse_exposition("ok 1\nbad{ 1\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
