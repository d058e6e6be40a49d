//! One module per consumed message type.

pub mod scan_requested;
