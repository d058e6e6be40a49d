//! `POST /api/scans`: queue manual scans of hosts or of a host group.

use std::collections::HashSet;
use std::path::Path;

use actix_web::http::header;
use actix_web::{HttpResponse, post, web};
use chrono::Utc;
use openwatch_common::ids::{HostGroupId, HostId, ScanId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::{host_groups, scans};
use openwatch_db::{AsyncConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// Most hosts one request may scan.
pub const MAX_HOSTS_PER_REQUEST: usize = 1000;

/// What to scan: exactly one of `host_ids` and `group_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestScans {
    /// Hosts to scan (1–1000; a repeated id counts once).
    #[schema(max_items = 1000, min_items = 1)]
    pub host_ids: Option<Vec<uuid::Uuid>>,
    /// Scan every current member of this host group (1–1000 members).
    pub group_id: Option<uuid::Uuid>,
    /// Restrict the scans to one framework's rules (a file of `rules/frameworks/`, e.g.
    /// `cis-debian12`).
    #[schema(pattern = "^[a-z0-9][a-z0-9.-]{1,63}$", example = "cis-debian12")]
    pub framework: Option<String>,
}

/// The queued scans, one per host, in the order of the hosts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScansRequested {
    /// Ids of the new scans.
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub scan_ids: Vec<ScanId>,
}

/// The hosts a request names, before group expansion.
enum Target {
    Hosts(Vec<HostId>),
    Group(HostGroupId),
}

/// Checks the spelling of a framework id (`^[a-z0-9][a-z0-9.-]{1,63}$`: no `/`, so it
/// cannot leave the frameworks folder) and, when the rules' `frameworks/` folder can be
/// read, that it names one of its control lists.
fn validate_framework(rules_dir: &Path, framework: String) -> Result<String, ApiError> {
    let bytes = framework.as_bytes();
    let well_formed = (2..=64).contains(&bytes.len())
        && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_framework",
            "framework must match ^[a-z0-9][a-z0-9.-]{1,63}$",
        ));
    }
    let frameworks = rules_dir.join("frameworks");
    if frameworks.is_dir() && !frameworks.join(format!("{framework}.csv")).is_file() {
        return Err(ApiError::unprocessable(
            "unknown_framework",
            format!("no framework `{framework}` in the rules catalogue"),
        ));
    }
    Ok(framework)
}

fn target_of(host_ids: Option<Vec<uuid::Uuid>>, group_id: Option<uuid::Uuid>) -> Result<Target, ApiError> {
    match (host_ids, group_id) {
        (Some(ids), None) => {
            let mut seen = HashSet::with_capacity(ids.len());
            let ids: Vec<HostId> = ids.into_iter().filter(|id| seen.insert(*id)).map(HostId).collect();
            if ids.is_empty() {
                return Err(ApiError::bad_request("invalid_target", "host_ids must name at least one host"));
            }
            if ids.len() > MAX_HOSTS_PER_REQUEST {
                return Err(ApiError::bad_request(
                    "too_many_hosts",
                    format!("at most {MAX_HOSTS_PER_REQUEST} hosts per request"),
                ));
            }
            Ok(Target::Hosts(ids))
        }
        (None, Some(group)) => Ok(Target::Group(HostGroupId(group))),
        _ => Err(ApiError::bad_request("invalid_target", "give exactly one of `host_ids` and `group_id`")),
    }
}

/// Queues a manual scan of each host (or of each member of a group). The scans and their
/// messages are written in one transaction with the audit event; each host's next
/// automatic scan is postponed by its interval.
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["scans:write"])),
    request_body = RequestScans,
    responses(
        (status = 202, description = "Queued; `Location` names the scan when one host was requested", body = ScansRequested),
        (status = 400, description = "`invalid_target`, `too_many_hosts`, `invalid_framework`, `invalid_body`", body = ErrorBody),
        (status = 422, description = "`unknown_host`, `unknown_group`, `no_hosts` (empty group), `too_many_hosts` (group), `unknown_framework`", body = ErrorBody),
    )
)]
#[post("/scans")]
pub async fn request_scans(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<RequestScans>,
) -> Result<HttpResponse, ApiError> {
    let RequestScans { host_ids, group_id, framework } = body.into_inner();
    let target = target_of(host_ids, group_id)?;
    let framework = framework.map(|f| validate_framework(&state.config.rules_dir, f)).transpose()?;
    let traceparent = openwatch_telemetry::current_traceparent();
    let now = Utc::now();
    let mut conn = state.pool.get().await?;
    let (scan_ids, hosts) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let hosts = match target {
                Target::Hosts(ids) => ids,
                Target::Group(group) => {
                    host_groups::get_group(conn, group).await.map_err(|e| match e {
                        DbError::NotFound => {
                            ApiError::unprocessable("unknown_group", format!("no host group {group}"))
                        }
                        other => other.into(),
                    })?;
                    let members = host_groups::host_ids_in_group(conn, group).await?;
                    if members.is_empty() {
                        return Err(ApiError::unprocessable("no_hosts", "the group has no hosts"));
                    }
                    if members.len() > MAX_HOSTS_PER_REQUEST {
                        return Err(ApiError::unprocessable(
                            "too_many_hosts",
                            format!(
                                "the group has {} hosts; at most {MAX_HOSTS_PER_REQUEST} per request",
                                members.len()
                            ),
                        ));
                    }
                    members
                }
            };
            let scan_ids = scans::request_manual_scans_traced(
                conn,
                &hosts,
                framework.clone(),
                principal.user_id,
                now,
                traceparent.as_deref(),
            )
            .await
            .map_err(|e| match e {
                DbError::Constraint { constraint, message } if constraint == "scans_host_id_fkey" => {
                    ApiError::unprocessable("unknown_host", message)
                }
                other => other.into(),
            })?;
            let event = audit::event(
                &principal,
                &client,
                "scan.request",
                "scan",
                (scan_ids.len() == 1).then(|| scan_ids[0].to_string()),
                AuditOutcome::Success,
                serde_json::json!({
                    "scan_ids": scan_ids,
                    "host_ids": hosts,
                    "group_id": group_id,
                    "framework": framework,
                }),
            );
            audit::record(conn, &event).await?;
            Ok((scan_ids, hosts))
        })
        .await?;
    let mut response = HttpResponse::Accepted();
    if let ([scan], [_]) = (scan_ids.as_slice(), hosts.as_slice()) {
        response.insert_header((header::LOCATION, format!("/api/scans/{scan}")));
    }
    Ok(response.json(ScansRequested { scan_ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_ids_are_checked_for_spelling_then_against_the_catalogue() {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        assert_eq!(validate_framework(&rules, "cis-debian12".into()).ok().as_deref(), Some("cis-debian12"));
        for bad in ["", "a", "../etc", "CIS", "-x", "a/b", &"x".repeat(65)] {
            assert_eq!(
                validate_framework(&rules, bad.into()).map_err(|e| e.code().to_owned()),
                Err("invalid_framework".into()),
                "{bad}"
            );
        }
        assert_eq!(
            validate_framework(&rules, "cis-nowhere".into()).map_err(|e| e.code().to_owned()),
            Err("unknown_framework".into())
        );
        // Without a readable catalogue only the spelling is checked.
        assert!(validate_framework(Path::new("/nonexistent"), "cis-nowhere".into()).is_ok());
    }

    #[test]
    fn exactly_one_target_is_required() {
        let code = |r: Result<Target, ApiError>| r.err().map(|e| e.code().to_owned());
        assert_eq!(code(target_of(None, None)), Some("invalid_target".into()));
        assert_eq!(code(target_of(Some(vec![]), None)), Some("invalid_target".into()));
        assert_eq!(
            code(target_of(Some(vec![uuid::Uuid::nil()]), Some(uuid::Uuid::nil()))),
            Some("invalid_target".into())
        );
        let many: Vec<uuid::Uuid> = (0..1001).map(|_| uuid::Uuid::new_v4()).collect();
        assert_eq!(code(target_of(Some(many), None)), Some("too_many_hosts".into()));
        let id = uuid::Uuid::new_v4();
        match target_of(Some(vec![id, id]), None) {
            Ok(Target::Hosts(hosts)) => assert_eq!(hosts, [HostId(id)]),
            _ => panic!("expected hosts"),
        }
    }
}
