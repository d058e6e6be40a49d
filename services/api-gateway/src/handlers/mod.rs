//! Request handlers, one module per resource, one file per endpoint where they grow.
//!
//! Each handler is annotated with `#[utoipa::path]` naming the permission it requires
//! (`security(("bearer" = ["…"]))`) or `security(())` when public; the gate enforces it.

pub mod auth;
pub mod catalog;
pub mod compliance;
pub mod credentials;
pub mod hosts;
pub mod meta;
pub mod operations;
pub mod scans;
pub mod users;

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every resource's routes under `/api`.
pub fn configure(cfg: &mut ServiceConfig) {
    meta::configure(cfg);
    auth::configure(cfg);
    users::configure(cfg);
    hosts::configure(cfg);
    credentials::configure(cfg);
    scans::configure(cfg);
    compliance::configure(cfg);
    operations::configure(cfg);
    catalog::configure(cfg);
}

/// Serde helper for PATCH fields: absent → `None`, `null` → `Some(None)`, value → `Some(Some(v))`.
pub mod double_option {
    use serde::{Deserialize, Deserializer};

    /// Deserialises a present field (absent fields use `#[serde(default)]`).
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(de).map(Some)
    }
}
