//! All SQL of the platform, one module per aggregate.
//!
//! Functions take `&mut AsyncPgConnection` so callers decide the transaction boundary
//! (a pooled connection derefs to one). Rows hold `Uuid`s and `TEXT` spellings; the
//! functions convert to the `openwatch_common` newtypes and enums at this boundary.

pub mod alerts;
pub mod api_tokens;
pub mod audit;
pub mod compliance;
pub mod credentials;
pub mod dispatch;
pub mod exceptions;
pub mod host_groups;
pub mod hosts;
pub mod known_hosts;
pub mod maintenance_windows;
pub mod mfa;
pub mod outbox;
pub mod page;
pub mod processed_messages;
pub mod results;
pub mod scan_runs;
pub mod scans;
pub mod scheduler;
pub mod sessions;
pub mod users;
