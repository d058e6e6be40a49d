//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Security: one scheme, `bearer` (an access JWT or an `owk_…` API token). Each operation's
//! requirement lists the single permission it needs as the scope; the gate enforces that
//! same table ([`crate::http::route_table`]).

use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};

/// The static part of the document; paths are added by `utoipa-actix-web` as routes are
/// registered (see [`crate::app::openapi`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenWatch API",
        description = "Continuous compliance for Linux fleets. Every operation names the permission it requires as the scope of its `bearer` security requirement; `docs/API.md` has the role × permission matrix.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token or owk_ API token")
                    .description(Some("`Authorization: Bearer <token>`: an access token from `POST /api/auth/login`, or an API token."))
                    .build(),
            ),
        );
    }
}
