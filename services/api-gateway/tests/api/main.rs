//! The API gateway against real PostgreSQL and Redis: one test binary (`tests/api/`),
//! each test on its own database and Redis key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod admin_cli;
mod auth;
mod catalog;
mod compliance;
mod credentials;
mod hardening;
mod helpers;
mod hosts;
mod operations;
mod rbac;
mod scans;
mod users;
