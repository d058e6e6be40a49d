//! Parses the collection script's output into [`Facts`].
//!
//! Only lines starting with `@@OW-<nonce> ` are markers; the nonce is random per scan, so
//! a file or command output cannot inject a marker. Anything outside a section is ignored.

use std::collections::{BTreeMap, HashMap};

use super::{FileFact, Section, StatFact};
use crate::facts::Facts;
use crate::platform::Platform;

/// Why output could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No section at all: the script did not run (wrong shell, no output).
    #[error("the collection script produced no sections")]
    NoSections,
}

/// Parses `output` of the script built with `nonce`; `stat_requested` is the list of
/// paths that were stat'ed (so absence can be told from "not asked").
pub fn parse(output: &str, nonce: &str, stat_requested: Vec<String>) -> Result<Facts, ParseError> {
    let marker = format!("@@OW-{nonce} ");
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>, Option<i32>)> = None;
    let mut aliases: Vec<(String, String)> = Vec::new();
    for line in output.split('\n') {
        let Some(rest) = line.strip_prefix(marker.as_str()) else {
            // Output ends at the RC marker; what follows it is framing.
            if let Some((_, lines, None)) = current.as_mut() {
                lines.push(line);
            }
            continue;
        };
        if let Some(pair) = rest.strip_prefix("ALIAS ") {
            // A command shared by several checks ran once: `ALIAS <name> <section that ran>`.
            if let Some((alias, original)) = pair.split_once(' ') {
                aliases.push((alias.to_owned(), original.trim().to_owned()));
            }
        } else if let Some(name) = rest.strip_prefix("BEGIN ") {
            current = Some((name.to_owned(), Vec::new(), None));
        } else if let Some(code) = rest.strip_prefix("RC ") {
            if let Some((_, _, rc)) = current.as_mut() {
                *rc = code.trim().parse().ok();
            }
        } else if let Some(name) = rest.strip_prefix("END ") {
            // The script prints a newline before the RC marker, so joining the lines
            // before it restores the output byte for byte (trailing newline included).
            if let Some((open, lines, rc)) = current.take()
                && open == name
            {
                sections.insert(open, Section { output: lines.join("\n"), exit_code: rc });
            }
        } else if let Some((_, lines, None)) = current.as_mut() {
            // FILE markers stay in the `files` section's text and are parsed below.
            lines.push(line);
        }
    }
    for (alias, original) in aliases {
        if let Some(section) = sections.get(&original).cloned() {
            sections.insert(alias, section);
        }
    }
    if sections.is_empty() {
        return Err(ParseError::NoSections);
    }
    let files = sections.get("files").map(|s| parse_files(&s.output, &marker)).unwrap_or_default();
    let mut stats = sections.get("stat").map(|s| parse_stats(&s.output)).unwrap_or_default();
    name_owners(&mut stats, &files);
    let platform = sections.get("os-release").and_then(|s| Platform::from_os_release(&s.output));
    let uid = sections.get("id").and_then(|s| s.output.trim().parse().ok());
    Ok(Facts {
        platform,
        uid,
        sections,
        files,
        stats,
        stat_requested,
        walk_disabled: false,
        installed_index: Default::default(),
    })
}

/// How a file's framing says whether its content was cut.
enum Length {
    /// `SIZE <n>`: the file's size; fewer bytes read means cut.
    Size(usize),
    /// `CAP <n>`: at most `n` bytes are kept; the script read one more, so more than `n`
    /// means cut (and the extra byte is dropped). Saves a `wc -c` process per file.
    Cap(usize),
}

fn parse_files(text: &str, marker: &str) -> BTreeMap<String, FileFact> {
    let mut files = BTreeMap::new();
    let mut open: Option<(String, Length, Vec<&str>)> = None;
    for line in text.split('\n') {
        let Some(rest) = line.strip_prefix(marker).and_then(|r| r.strip_prefix("FILE")) else {
            if let Some((_, _, lines)) = open.as_mut() {
                lines.push(line);
            }
            continue;
        };
        if rest == "-END" {
            // As for sections: the newline printed before FILE-END is the separator.
            if let Some((path, length, lines)) = open.take() {
                let mut text = lines.join("\n");
                let truncated = match length {
                    Length::Size(size) => text.len() < size,
                    Length::Cap(cap) if text.len() > cap => {
                        let mut end = cap;
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.truncate(end);
                        true
                    }
                    Length::Cap(_) => false,
                };
                files.insert(path, FileFact::Content { text, truncated });
            }
            continue;
        }
        let rest = rest.trim_start();
        let (path, status) = match rest.rsplit_once(' ') {
            Some((head, "MISSING")) => (head, Some(FileFact::Missing)),
            Some((head, "UNREADABLE")) => (head, Some(FileFact::Unreadable)),
            Some((head, "NOT-A-FILE")) => (head, Some(FileFact::NotAFile)),
            _ => {
                let framing = rest
                    .rsplit_once(" CAP ")
                    .map(|(head, n)| (head, Length::Cap(n.trim().parse().unwrap_or(0))))
                    .or_else(|| {
                        rest.rsplit_once(" SIZE ")
                            .map(|(head, n)| (head, Length::Size(n.trim().parse().unwrap_or(0))))
                    });
                if let Some((head, length)) = framing {
                    open = Some((head.to_owned(), length, Vec::new()));
                }
                continue;
            }
        };
        // An unmatched glob comes back literally; it means "no such files", not a file.
        if let Some(fact) = status.filter(|_| !path.contains(['*', '?'])) {
            files.insert(path.to_owned(), fact);
        }
    }
    files
}

fn parse_stats(text: &str) -> BTreeMap<String, StatFact> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(7, '|');
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            let uid = parts.next()?.parse().ok()?;
            let gid = parts.next()?.parse().ok()?;
            let owner = parts.next()?.to_owned();
            let group = parts.next()?.to_owned();
            let file_type = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some((path, StatFact { mode, uid, gid, owner, group, file_type }))
        })
        .collect()
}

/// Fills the owner and group names the script left empty (it prints numeric ids only: a
/// name lookup per file cost more than the `stat` itself) from `/etc/passwd` and
/// `/etc/group` as read in the same run; an id neither file names stays numeric.
fn name_owners(stats: &mut BTreeMap<String, StatFact>, files: &BTreeMap<String, FileFact>) {
    let names = |path: &str| -> HashMap<u32, String> {
        let Some(FileFact::Content { text, .. }) = files.get(path) else { return HashMap::new() };
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?.parse().ok()?;
                Some((id, name.to_owned()))
            })
            .collect()
    };
    let (users, groups) = (names("/etc/passwd"), names("/etc/group"));
    for stat in stats.values_mut() {
        if stat.owner.is_empty() {
            stat.owner = users.get(&stat.uid).cloned().unwrap_or_else(|| stat.uid.to_string());
        }
        if stat.group.is_empty() {
            stat.group = groups.get(&stat.gid).cloned().unwrap_or_else(|| stat.gid.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "n0nce";

    fn output() -> String {
        [
            "@@OW-n0nce BEGIN os-release",
            "ID=debian",
            "VERSION_ID=\"12\"",
            "",
            "@@OW-n0nce RC 0",
            "@@OW-n0nce END os-release",
            "@@OW-n0nce BEGIN id",
            "0",
            "",
            "@@OW-n0nce RC 0",
            "@@OW-n0nce END id",
            "@@OW-n0nce BEGIN sshd",
            "",
            "@@OW-n0nce RC 127",
            "@@OW-n0nce END sshd",
            "@@OW-n0nce BEGIN big",
            "partial output",
            "@@OW-n0nce END big",
            "@@OW-n0nce BEGIN stat",
            "644|0|0|root|root|regular file|/etc/passwd",
            "640|0|42|root|shadow|regular file|/etc/shadow",
            "",
            "@@OW-n0nce RC 0",
            "@@OW-n0nce END stat",
            "@@OW-n0nce BEGIN files",
            "@@OW-n0nce FILE /etc/login.defs SIZE 27",
            "PASS_MAX_DAYS 365",
            "@@OW-fake END files",
            "",
            "@@OW-n0nce FILE-END",
            "@@OW-n0nce FILE /etc/sysctl.d/*.conf MISSING",
            "@@OW-n0nce FILE /etc/shadow UNREADABLE",
            "@@OW-n0nce FILE /etc/nope MISSING",
            "@@OW-n0nce RC 0",
            "@@OW-n0nce END files",
        ]
        .join("\n")
    }

    #[test]
    fn sections_exit_codes_files_and_stats_are_parsed() {
        let facts = parse(&output(), N, vec!["/etc/passwd".into()]).unwrap();
        assert_eq!(facts.platform.as_ref().unwrap().id, "debian");
        assert!(facts.privileged());
        assert!(facts.section("sshd").unwrap().command_missing());
        assert_eq!(facts.section("big").unwrap().exit_code, None, "cut sections have no exit code");
        assert_eq!(facts.stats["/etc/shadow"].mode, 0o640);
        assert_eq!(facts.stats["/etc/shadow"].group, "shadow");
        match &facts.files["/etc/login.defs"] {
            FileFact::Content { text, truncated } => {
                assert_eq!(text, "PASS_MAX_DAYS 365\n@@OW-fake END files\n", "forged markers stay content");
                assert!(*truncated || text.len() >= 27);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(facts.files["/etc/shadow"], FileFact::Unreadable);
        assert_eq!(facts.files["/etc/nope"], FileFact::Missing);
        assert!(!facts.files.keys().any(|k| k.contains('*')), "unmatched globs are not files");
    }

    #[test]
    fn content_round_trips_byte_for_byte_with_or_without_a_trailing_newline() {
        for text in ["a\nb\n", "a\nb", "", "\n\n"] {
            let output = format!(
                "@@OW-n BEGIN files\n@@OW-n FILE /f SIZE {}\n{text}\n@@OW-n FILE-END\n@@OW-n RC 0\n@@OW-n END files\n\
                 @@OW-n BEGIN cmd:x\n{text}\n@@OW-n RC 0\n\n@@OW-n END cmd:x\n",
                text.len()
            );
            let facts = parse(&output, "n", vec![]).unwrap();
            assert_eq!(
                facts.files["/f"],
                FileFact::Content { text: text.to_owned(), truncated: false },
                "{text:?}"
            );
            assert_eq!(facts.section("cmd:x").unwrap().output, text, "{text:?}");
        }
    }

    #[test]
    fn a_capped_file_is_cut_only_when_more_than_the_cap_was_read() {
        let files = |content: &str| {
            let output = format!(
                "@@OW-n BEGIN id\n0\n@@OW-n RC 0\n@@OW-n END id\n@@OW-n BEGIN files\n\
                 @@OW-n FILE /etc/a CAP 4\n{content}\n@@OW-n FILE-END\n@@OW-n RC 0\n@@OW-n END files\n"
            );
            parse(&output, "n", vec![]).unwrap().files.remove("/etc/a").unwrap()
        };
        assert_eq!(files("abcd"), FileFact::Content { text: "abcd".into(), truncated: false });
        assert_eq!(files("ab\n"), FileFact::Content { text: "ab\n".into(), truncated: false });
        // The script reads cap + 1 bytes: one more than the cap means the file is longer.
        assert_eq!(files("abcde"), FileFact::Content { text: "abcd".into(), truncated: true });
        // A cut inside a multi-byte character keeps whole characters.
        assert_eq!(files("abcé"), FileFact::Content { text: "abc".into(), truncated: true });
    }

    #[test]
    fn numeric_owners_are_named_from_the_account_files_of_the_same_run() {
        let output = "@@OW-n BEGIN id\n0\n@@OW-n RC 0\n@@OW-n END id\n\
                      @@OW-n BEGIN stat\n640|0|42|||regular file|/etc/shadow\n755|4242|4343|||directory|/srv/x\n\
                      @@OW-n RC 0\n@@OW-n END stat\n@@OW-n BEGIN files\n\
                      @@OW-n FILE /etc/passwd CAP 100\nroot:x:0:0:root:/root:/bin/bash\n@@OW-n FILE-END\n\
                      @@OW-n FILE /etc/group CAP 100\nroot:x:0:\nshadow:x:42:\n@@OW-n FILE-END\n\
                      @@OW-n RC 0\n@@OW-n END files\n";
        let facts = parse(output, "n", vec![]).unwrap();
        let shadow = &facts.stats["/etc/shadow"];
        assert_eq!((shadow.owner.as_str(), shadow.group.as_str()), ("root", "shadow"));
        let unknown = &facts.stats["/srv/x"];
        assert_eq!((unknown.owner.as_str(), unknown.group.as_str()), ("4242", "4343"));
    }

    #[test]
    fn output_without_sections_is_an_error() {
        assert_eq!(parse("sh: syntax error\n", N, vec![]), Err(ParseError::NoSections));
    }
}
