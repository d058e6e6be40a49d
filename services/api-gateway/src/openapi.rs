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

/// Adds the error responses every operation can give to each operation of the serialised
/// document (unless the operation documents them itself): 401/403 on protected routes,
/// 400/404 where the path or query has parameters, 400/413/415 where there is a body, and
/// 429/500/503 everywhere — so clients (and the fuzzer) see every status the gate and the
/// extractors can answer with.
pub fn add_standard_errors(document: &mut serde_json::Value) {
    use serde_json::{Value, json};

    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let public = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty())));
            let has_params = path.contains('{') || operation.get("parameters").is_some();
            let has_body = operation.get("requestBody").is_some();
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses.entry(status.to_owned()).or_insert_with(|| error(description));
            };
            if !public {
                add("401", "`unauthenticated`, `invalid_token`, `token_expired` or `token_revoked`");
                add("403", "`permission_denied` (the message names the permission)");
            }
            if has_params || has_body {
                add("400", "`invalid_path`, `invalid_query` or `invalid_body`");
            }
            if path.contains('{') {
                add("404", "the resource does not exist");
            }
            if has_body {
                add("413", "`payload_too_large`");
                add("415", "`unsupported_media_type`");
            }
            add("500", "`internal_error` (the cause is logged, not returned)");
            add("503", "`service_unavailable`: a dependency is unavailable");
            responses.entry("429".to_owned()).or_insert_with(|| {
                let mut response = error("`rate_limited`");
                response["headers"] = json!({"Retry-After": {"description": "seconds until the window resets", "schema": {"type": "integer"}}});
                response
            });
        }
    }
}
