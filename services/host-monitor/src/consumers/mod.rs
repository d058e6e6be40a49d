//! One module per consumed message type.

pub mod host_check_requested;
