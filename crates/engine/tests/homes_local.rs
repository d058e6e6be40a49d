//! The home-directory probe for real, on this machine: root (whose shell is a login shell
//! here) is listed with its home and the dot files in it, exactly as `stat` sees them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use openwatch_engine::checks::homes::HOMES_SECTION;
use openwatch_engine::facts::script::{self, ScriptOptions};
use openwatch_engine::facts::{Probe, parse};
use openwatch_engine::transport::{ExecLimits, LocalTransport, Transport};

#[test]
fn the_probe_lists_interactive_accounts_with_their_homes_and_dot_files() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let shells = std::fs::read_to_string("/etc/shells").unwrap();
    let me = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[2] == std::fs::metadata("/proc/self").unwrap().uid().to_string())
        .expect("this user is in /etc/passwd");
    assert!(
        shells.lines().any(|s| s.trim() == me[6]),
        "this test needs the running user's shell ({}) listed in /etc/shells",
        me[6]
    );
    let nonce = script::new_nonce();
    let text = script::build(&BTreeSet::from([Probe::HomeDirectories]), &nonce, &ScriptOptions::default());
    let limits = ExecLimits { exec_timeout: Duration::from_secs(30), ..ExecLimits::default() };
    let out = LocalTransport::new().run_script(&text, &limits).unwrap();
    let facts = parse::parse(&String::from_utf8_lossy(&out.stdout), &nonce, Vec::new()).unwrap();
    let section = facts.section(HOMES_SECTION).expect("the homes section");
    assert_eq!(section.exit_code, Some(0), "{}", section.output);
    let lines: Vec<&str> = section.output.lines().collect();
    let account = format!("U {}|{}|{}|{}", me[0], me[2], me[3], me[5]);
    let at = lines
        .iter()
        .position(|l| *l == account)
        .unwrap_or_else(|| panic!("{account} in\n{}", section.output));
    let home = std::fs::metadata(me[5]).unwrap();
    assert_eq!(
        lines[at + 1],
        format!("S {:o}|{}|{}|directory|{}", home.mode() & 0o7777, home.uid(), home.gid(), me[5])
    );
    // Every dot file directly in the home, and nothing else, follows until the next account.
    let listed: BTreeSet<String> = lines[at + 2..]
        .iter()
        .take_while(|l| l.starts_with("S "))
        .map(|l| l.rsplit('|').next().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = std::fs::read_dir(me[5])
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.rsplit('/').next().unwrap().starts_with('.'))
        .collect();
    assert_eq!(listed, expected);
}
