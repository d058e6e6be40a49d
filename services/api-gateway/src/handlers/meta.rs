//! The API about itself: the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::state::ApiState;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_openapi);
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
#[get("/openapi.json")]
pub async fn get_openapi(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi_json.as_str().to_owned())
}
