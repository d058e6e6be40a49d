//! `api-gateway`: the only way users and tools reach OpenWatch (HTTP, behind nginx-lb).
//!
//! Stateless: PostgreSQL holds the data, Redis the rate limits and revocations, so any
//! number of replicas serve the same users. It also relays the outbox (rows request
//! handlers write in the same transaction as their change) to RabbitMQ.
//!
//! # Layout
//! * [`config`] — gateway settings (keys, CORS, proxies, limits).
//! * [`app`] — state, the `/api` scope and its middleware, the OpenAPI document.
//! * [`auth`] — access tokens, API tokens, revocation, [`auth::Principal`].
//! * [`http`] — middleware (request id, headers, CORS, the gate), pagination, audit.
//! * [`handlers`] — one module per resource.
//! * [`error`] — [`error::ApiError`] and its status mapping.
//! * [`openapi`] — the document's static part and security scheme.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod handlers;
pub mod http;
pub mod openapi;
pub mod state;
