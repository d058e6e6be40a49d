//! The filesystem walk script for real, on this machine: a tree of planted files below the
//! target directory must come back with exactly the expected findings, from the parallel
//! part of the walk (the tree is deeper than the depth-2 split), and nothing else from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use openwatch_engine::checks::walk::parse_walk;
use openwatch_engine::facts::script::{self, ScriptOptions, WALK_SECTION};
use openwatch_engine::facts::{Probe, parse};
use openwatch_engine::transport::{ExecLimits, LocalTransport, Transport};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The mount point and type of `path`, from `findmnt`.
fn mount_of(path: &Path) -> (String, String) {
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "TARGET,FSTYPE", "--target"])
        .arg(path)
        .output()
        .expect("findmnt runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (target, fstype) = text.trim().split_once(' ').expect("findmnt answers TARGET FSTYPE");
    (target.to_owned(), fstype.trim().to_owned())
}

#[test]
fn the_walk_finds_exactly_the_planted_files() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("walk-{}", uuid::Uuid::new_v4().simple()));
    let (mount, fstype) = mount_of(Path::new(env!("CARGO_TARGET_TMPDIR")));
    assert!(
        ["ext2", "ext3", "ext4", "xfs", "btrfs"].contains(&fstype.as_str()),
        "this test needs the target directory on a local filesystem the walk covers, \
         but {mount} is {fstype}"
    );
    let deep = root.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    let world_writable = deep.join("world-writable");
    std::fs::write(&world_writable, "x").unwrap();
    chmod(&world_writable, 0o666);
    let open_dir = root.join("a/open");
    std::fs::create_dir(&open_dir).unwrap();
    chmod(&open_dir, 0o777);
    let sticky_dir = root.join("a/sticky");
    std::fs::create_dir(&sticky_dir).unwrap();
    chmod(&sticky_dir, 0o1777);
    let setuid = deep.join("setuid");
    std::fs::write(&setuid, "x").unwrap();
    chmod(&setuid, 0o4755);
    let name_with_blanks = deep.join("two  blanks");
    std::fs::write(&name_with_blanks, "x").unwrap();
    chmod(&name_with_blanks, 0o2755);
    std::fs::write(deep.join("plain"), "x").unwrap();
    let root_user = running_as_root();
    let unowned = deep.join("unowned");
    if root_user {
        std::fs::write(&unowned, "x").unwrap();
        // Ids no account database on a test machine holds.
        std::os::unix::fs::chown(&unowned, Some(4_142_001), Some(4_142_002)).unwrap();
    }

    let nonce = script::new_nonce();
    let probes = BTreeSet::from([Probe::FilesystemWalk]);
    let text = script::build(&probes, &nonce, &ScriptOptions::default());
    let limits = ExecLimits { exec_timeout: Duration::from_secs(120), ..ExecLimits::default() };
    let out = LocalTransport::new().run_script(&text, &limits).unwrap();
    let facts = parse::parse(&String::from_utf8_lossy(&out.stdout), &nonce, Vec::new()).unwrap();
    let section = facts.section(WALK_SECTION).expect("the walk section");
    assert_eq!(section.exit_code, Some(0), "walk output:\n{}", section.output);
    let report = parse_walk(&section.output);
    assert_eq!(report.fatal, None);
    assert!(report.completed.contains(&mount), "{mount} walked to the end: {report:?}");
    assert!(report.unfinished.is_empty(), "{report:?}");

    let prefix = format!("{}/", root.display());
    let mine: BTreeSet<(String, String)> =
        report.findings.iter().filter(|(_, path)| path.starts_with(&prefix)).cloned().collect();
    let mut expected = BTreeSet::from([
        ("WW".to_owned(), world_writable.display().to_string()),
        ("WD".to_owned(), open_dir.display().to_string()),
        ("SS".to_owned(), setuid.display().to_string()),
        ("SS".to_owned(), name_with_blanks.display().to_string()),
    ]);
    if root_user {
        expected.insert(("NU".to_owned(), unowned.display().to_string()));
        expected.insert(("NG".to_owned(), unowned.display().to_string()));
    }
    assert_eq!(mine, expected);
    // Every finding line parsed into a tag and an absolute path: no two lines ran together.
    for (tag, path) in &report.findings {
        assert!(path.starts_with('/') && !path.contains("WW ") && !path.contains("SS "), "{tag} {path}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Whether this test runs as root (needed to plant a file with an unknown owner).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}
