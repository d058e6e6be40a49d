//! Test fixtures over the real infrastructure: PostgreSQL, RabbitMQ, Redis and service
//! processes. Nothing here is a mock: every fixture talks to a real server and isolates
//! the test (own database, own broker names, own key prefix) so tests run in parallel.
//!
//! This crate is a dev-dependency only; it may panic on setup failure (a test that
//! cannot set up must fail loudly).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod broker;
pub mod database;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod service;
pub mod ssh;
