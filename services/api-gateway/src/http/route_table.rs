//! Which permission each route requires, read from the OpenAPI document.
//!
//! Every operation declares its permission once, as the scope of its `bearer` security
//! requirement (`security(("bearer" = ["hosts:write"]))`); public operations declare
//! `security(())`. The gate middleware enforces this table before any extractor or handler
//! runs, so a handler cannot forget its check, and the document the clients read is the
//! one that is enforced. An operation without a declaration fails startup.

use actix_web::http::Method;
use openwatch_common::access::Permission;
use serde_json::Value;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication (login, refresh, the OpenAPI document).
    Public,
    /// An authenticated principal holding this permission.
    Requires(Permission),
}

#[derive(Debug, Clone)]
struct Entry {
    method: Method,
    segments: Vec<Option<String>>,
    access: Access,
}

/// Route → access, matched by method and path template (`/api/hosts/{id}`).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
}

/// One row of the table, for tests and docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAccess {
    /// HTTP method.
    pub method: Method,
    /// Path template.
    pub path: String,
    /// What it requires.
    pub access: Access,
}

impl RouteTable {
    /// Builds the table from a serialised OpenAPI document. Fails on an operation that
    /// declares no security, declares several permissions, or an unknown permission.
    pub fn from_openapi(document: &Value) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for route in Self::routes(document)? {
            entries.push(Entry {
                method: route.method,
                segments: template_segments(&route.path),
                access: route.access,
            });
        }
        Ok(Self { entries })
    }

    /// Every route of the document with its access.
    pub fn routes(document: &Value) -> anyhow::Result<Vec<RouteAccess>> {
        let paths =
            document.get("paths").and_then(Value::as_object).ok_or_else(|| anyhow::anyhow!("no paths"))?;
        let mut routes = Vec::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method_name, operation) in item {
                let Ok(method) = method_name.to_uppercase().parse::<Method>() else { continue };
                if !matches!(method_name.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    continue;
                }
                let security = operation.get("security").and_then(Value::as_array).ok_or_else(|| {
                    anyhow::anyhow!("{method} {path} declares no security (permission or public)")
                })?;
                let access = match security.as_slice() {
                    [] => Access::Public,
                    [only] if only.as_object().is_some_and(|o| o.is_empty()) => Access::Public,
                    [only] => {
                        let scopes = only.get("bearer").and_then(Value::as_array).ok_or_else(|| {
                            anyhow::anyhow!("{method} {path}: security must use the `bearer` scheme")
                        })?;
                        match scopes.as_slice() {
                            [Value::String(scope)] => Access::Requires(
                                scope.parse().map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?,
                            ),
                            _ => anyhow::bail!("{method} {path}: exactly one permission scope is required"),
                        }
                    }
                    _ => anyhow::bail!("{method} {path}: one security requirement expected"),
                };
                routes.push(RouteAccess { method, path: path.clone(), access });
            }
        }
        Ok(routes)
    }

    /// The access of the route `method path` matches, preferring literal segments over
    /// parameters (`/api/hosts/import` before `/api/hosts/{id}`); `None` when no route
    /// matches (the router will answer 404 — after authentication).
    pub fn lookup(&self, method: &Method, path: &str) -> Option<Access> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.entries
            .iter()
            .filter(|e| e.method == *method && e.segments.len() == parts.len())
            .filter(|e| {
                e.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                    Some(literal) => literal == part,
                    None => !part.is_empty(),
                })
            })
            .max_by_key(|e| e.segments.iter().filter(|s| s.is_some()).count())
            .map(|e| e.access)
    }
}

fn template_segments(path: &str) -> Vec<Option<String>> {
    path.trim_end_matches('/')
        .split('/')
        .map(|s| if s.starts_with('{') && s.ends_with('}') { None } else { Some(s.to_owned()) })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn literal_segments_win_over_parameters_and_undeclared_routes_fail() {
        let doc = json!({"paths": {
            "/api/hosts/{id}": {"get": {"security": [{"bearer": ["hosts:read"]}]}},
            "/api/hosts/import": {"post": {"security": [{"bearer": ["hosts:write"]}]}},
            "/api/auth/login": {"post": {"security": [{}]}}
        }});
        let table = RouteTable::from_openapi(&doc).unwrap();
        assert_eq!(
            table.lookup(&Method::GET, "/api/hosts/abc"),
            Some(Access::Requires(Permission::HostsRead))
        );
        assert_eq!(
            table.lookup(&Method::POST, "/api/hosts/import"),
            Some(Access::Requires(Permission::HostsWrite))
        );
        assert_eq!(table.lookup(&Method::POST, "/api/auth/login"), Some(Access::Public));
        assert_eq!(table.lookup(&Method::DELETE, "/api/hosts/abc"), None);
        assert_eq!(table.lookup(&Method::GET, "/api/hosts/abc/extra"), None);

        let undeclared = json!({"paths": {"/api/x": {"get": {}}}});
        assert!(RouteTable::from_openapi(&undeclared).is_err());
        let two =
            json!({"paths": {"/api/x": {"get": {"security": [{"bearer": ["hosts:read", "hosts:write"]}]}}}});
        assert!(RouteTable::from_openapi(&two).is_err());
        let unknown = json!({"paths": {"/api/x": {"get": {"security": [{"bearer": ["hosts:nuke"]}]}}}});
        assert!(RouteTable::from_openapi(&unknown).is_err());
    }
}
