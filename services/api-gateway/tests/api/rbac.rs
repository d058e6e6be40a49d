//! Every route × every role: allowed exactly when the role holds the route's permission.
//!
//! The routes come from the served OpenAPI document (the same table the gate enforces);
//! the expectation comes from `Role::permissions` (the matrix in docs/API.md). A handler
//! registered without a permission fails startup; one whose declared scope disagrees with
//! what it does shows up here as a role that can or cannot act against the matrix.

use chrono::Utc;
use openwatch_api_gateway::http::route_table::{Access, RouteTable};
use openwatch_common::access::Role;
use openwatch_common::ids::SessionId;
use serde_json::json;

use crate::helpers::TestApp;

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                if segment.contains("rule") || segment.contains("framework") {
                    "no-such-thing".to_owned()
                } else {
                    uuid::Uuid::new_v4().to_string()
                }
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_allows_exactly_the_roles_holding_its_permission() {
    let app = TestApp::spawn().await;
    let doc = app.request("GET", "/api/openapi.json", None, None).await;
    let routes = RouteTable::routes(&doc.json).unwrap();
    assert!(routes.len() >= 10, "{} routes", routes.len());
    let mut users = Vec::new();
    for role in Role::ALL {
        users.push(app.create_user(*role).await);
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for route in &routes {
        let path = concrete(&route.path);
        for user in &users {
            // A fresh token per request: some routes (logout) end the session they are called with.
            let token = app
                .state
                .jwt
                .issue(user.id, &user.username, user.role, SessionId::new(), Utc::now())
                .unwrap()
                .0;
            let body = matches!(route.method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
            let resp = app.request(route.method.as_str(), &path, Some(&token), body.as_ref()).await;
            let denied = resp.status == 403 && resp.code() == "permission_denied";
            let expected_denied = match route.access {
                Access::Public => false,
                Access::Requires(permission) => !user.role.allows(permission),
            };
            checked += 1;
            if denied != expected_denied || resp.status == 401 || resp.status >= 500 {
                failures.push(format!(
                    "{} {} as {}: got {} {} (expected {})",
                    route.method,
                    route.path,
                    user.role,
                    resp.status,
                    resp.code(),
                    if expected_denied { "denied" } else { "allowed" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} checks failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(checked, routes.len() * Role::ALL.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_reach_only_public_routes() {
    let app = TestApp::spawn().await;
    let doc = app.request("GET", "/api/openapi.json", None, None).await;
    for route in RouteTable::routes(&doc.json).unwrap() {
        let body = matches!(route.method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
        let resp = app.request(route.method.as_str(), &concrete(&route.path), None, body.as_ref()).await;
        match route.access {
            Access::Public => assert_ne!(resp.status, 401, "{} {}", route.method, route.path),
            Access::Requires(_) => {
                assert_eq!(
                    (resp.status, resp.code()),
                    (401, "unauthenticated"),
                    "{} {}",
                    route.method,
                    route.path
                )
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn undocumented_paths_are_unreachable_even_when_authenticated() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SuperAdmin).await;
    let resp = app.get("/api/internal/debug", &token).await;
    assert_eq!((resp.status, resp.code()), (404, "route_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_permission_matrix_and_route_list_in_docs_api_md_match_the_code() {
    let app = TestApp::spawn().await;
    let doc = app.request("GET", "/api/openapi.json", None, None).await;
    let expected = openwatch_api_gateway::openapi::access_reference_markdown(&doc.json).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (begin, end) =
        (openwatch_api_gateway::openapi::REFERENCE_BEGIN, openwatch_api_gateway::openapi::REFERENCE_END);
    let current = text.split_once(begin).and_then(|(_, rest)| rest.split_once(end)).map(|(inside, _)| inside);
    if current != Some(expected.as_str()) {
        if std::env::var_os("OPENWATCH_BLESS").is_some() {
            let updated = match text
                .split_once(begin)
                .and_then(|(head, rest)| rest.split_once(end).map(|(_, tail)| (head, tail)))
            {
                Some((head, tail)) => format!("{head}{begin}{expected}{end}{tail}"),
                None => format!("{text}\n{begin}{expected}{end}\n"),
            };
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!("docs/API.md is out of date: rerun with OPENWATCH_BLESS=1\n{expected}");
        }
    }
}
