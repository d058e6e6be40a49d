//! All SQL of the platform, one module per aggregate.
//!
//! Functions take `&mut AsyncPgConnection` so callers decide the transaction boundary
//! (a pooled connection derefs to one). Rows hold `Uuid`s and `TEXT` spellings; the
//! functions convert to the `openwatch_common` newtypes and enums at this boundary.

pub mod exceptions;
pub mod hosts;
pub mod outbox;
pub mod processed_messages;
pub mod scans;
pub mod sessions;
