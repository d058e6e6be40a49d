//! (being written)

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers the routes.
pub fn configure(_cfg: &mut ServiceConfig) {}
