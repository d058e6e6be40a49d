//! Prints the collection script the engine would send for the corpus in `rules/`
//! (`cargo run -p openwatch-engine --example print_script [-- --no-walk]`), for reviewing
//! exactly what runs on a host and profiling it (`sh -x`).
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use openwatch_engine::eval::probes_for;
use openwatch_engine::facts::Probe;
use openwatch_engine::facts::script::{ScriptOptions, build, new_nonce};
use openwatch_engine::rules::RuleSet;

fn main() {
    let rules = RuleSet::load("rules").unwrap();
    let mut probes = probes_for(rules.rules.values(), None);
    if std::env::args().any(|a| a == "--no-walk") {
        probes.remove(&Probe::FilesystemWalk);
    }
    print!("{}", build(&probes, &new_nonce(), &ScriptOptions::default()));
}
