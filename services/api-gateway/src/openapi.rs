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

/// Marks the start of the generated reference in `docs/API.md`.
pub const REFERENCE_BEGIN: &str = "<!-- BEGIN GENERATED: access reference (tests/api/rbac.rs) -->\n";
/// Marks its end.
pub const REFERENCE_END: &str = "<!-- END GENERATED -->";

/// The role × permission matrix and the route → permission list, as Markdown, for
/// `docs/API.md` (a test keeps the file equal to this).
pub fn access_reference_markdown(document: &serde_json::Value) -> anyhow::Result<String> {
    use openwatch_common::access::{Permission, Role};

    use crate::http::route_table::{Access, RouteTable};

    let mut out = String::from("\n### Role × permission matrix\n\n| permission |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for permission in Permission::ALL {
        out.push_str(&format!("| `{permission}` |"));
        for role in Role::ALL {
            out.push_str(if role.allows(*permission) { " ✔ |" } else { " |" });
        }
        out.push('\n');
    }
    out.push_str("\n### Routes\n\n| method | path | requires |\n|---|---|---|\n");
    let mut routes = RouteTable::routes(document)?;
    routes.sort_by(|a, b| (&a.path, a.method.as_str()).cmp(&(&b.path, b.method.as_str())));
    for route in routes {
        let requires = match route.access {
            Access::Public => "public".to_owned(),
            Access::Requires(p) => format!("`{p}`"),
        };
        out.push_str(&format!("| {} | `{}` | {requires} |\n", route.method, route.path));
    }
    out.push('\n');
    Ok(out)
}
