//! One module per consumed message type.

pub mod maintenance_job_requested;
