//! Who is calling: access tokens (JWT), API tokens, revocation, and the [`Principal`]
//! every protected handler receives.
//!
//! # Layout
//! * [`jwt`] — Ed25519 access tokens with `kid` rotation.
//! * [`revocation`] — the Redis denylist checked on every request (logout, reuse, role change).
//! * [`principal`] — [`Principal`] and how a bearer token becomes one.

pub mod jwt;
pub mod principal;
pub mod revocation;

pub use principal::{ClientInfo, Principal, PrincipalKind};
