//! The OpenWatch compliance engine: load rules, collect every fact a host needs in one
//! round trip, and evaluate all rules locally with honest statuses and evidence.
//!
//! No database, broker, HTTP or cache dependency (CI layering guard): the engine is a
//! library the scan worker and the `openwatch` CLI call.
//!
//! # Layout
//! * [`platform`] — `/etc/os-release` parsing and platform matching.
//! * [`facts`] — what can be collected ([`facts::Probe`]), the one collection script, and
//!   parsing its sectioned output into [`facts::Facts`].
//! * [`checks`] — the typed check kinds and their evaluation against facts.
//! * [`fixtures`] — passing and failing fact fixtures of every rule.
//! * [`frameworks`] — framework control lists (`rules/frameworks/*.csv`) and coverage.
//! * [`rules`] — the YAML rule format, strict loading, variables per framework.
//! * [`eval`] — combining check outcomes into rule results; scores.
//! * [`scan`] — one scan of one host, end to end.
//! * [`transport`] — where the script runs: SSH (`ssh2`) or the local machine.

pub mod checks;
pub mod eval;
pub mod facts;
pub mod fixtures;
pub mod frameworks;
pub mod platform;
pub mod rules;
pub mod scan;
pub mod transport;
