//! The rules catalogue and framework coverage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{HttpResponse, get, web};
use openwatch_engine::frameworks::{self, CoverageReport, Framework};
use openwatch_engine::rules::RuleSet;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{PageBody, PageParams, TOTAL_COUNT};
use crate::state::ApiState;

/// The loaded corpus.
struct Catalog {
    dir: PathBuf,
    rules: RuleSet,
    frameworks: Vec<Framework>,
    coverage: CoverageReport,
}

static CATALOG: OnceCell<Arc<Catalog>> = OnceCell::const_new();

fn load(dir: &Path) -> Result<Catalog, String> {
    let rules =
        RuleSet::load_dir(dir).map_err(|errors| format!("{} rule(s) failed to load", errors.len()))?;
    let frameworks = frameworks::load_dir(&dir.join("frameworks"))
        .map_err(|errors| format!("{} framework list(s) failed to load", errors.len()))?;
    let coverage = frameworks::coverage(&rules, &frameworks);
    Ok(Catalog { dir: dir.to_owned(), rules, frameworks, coverage })
}

async fn catalog(state: &ApiState) -> Result<Arc<Catalog>, ApiError> {
    let dir = state.config.rules_dir.clone();
    let catalog = CATALOG
        .get_or_try_init(|| async {
            let dir = dir.clone();
            match web::block(move || load(&dir)).await {
                Ok(Ok(catalog)) => Ok(Arc::new(catalog)),
                Ok(Err(cause)) => Err(cause),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|cause| {
            tracing::error!(error = %cause, rules.dir = %dir.display(), "rules catalogue unavailable");
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "catalog_unavailable",
                "the rule corpus could not be loaded",
            )
        })?;
    if catalog.dir != dir {
        tracing::warn!(loaded = %catalog.dir.display(), configured = %dir.display(), "one corpus per process");
    }
    Ok(catalog.clone())
}

/// A rule in the catalogue list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleSummary {
    /// Stable id.
    pub id: String,
    /// Title.
    pub title: String,
    /// `critical`, `high`, `medium`, `low`, `info`.
    pub severity: String,
    /// Category.
    pub category: String,
    /// Labels.
    pub tags: Vec<String>,
    /// Framework id → control ids.
    pub frameworks: std::collections::BTreeMap<String, Vec<String>>,
    /// Platforms (family and version range).
    #[schema(value_type = Vec<Object>)]
    pub platforms: serde_json::Value,
    /// Needs human review (no automated check).
    pub manual: bool,
}

/// Filters of the rule list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// Rules referencing this framework id (e.g. `cis-debian12`).
    pub framework: Option<String>,
    /// Rules for this platform family (`debian`, `ubuntu`, `rhel`, `rocky`, `almalinux`).
    pub platform: Option<String>,
    /// Severity.
    pub severity: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Text in the id or title (case-insensitive).
    pub q: Option<String>,
}

/// The rules catalogue, by id.
#[utoipa::path(
    tag = "rules",
    security(("bearer" = ["rules:read"])),
    params(RuleQuery, PageParams),
    responses((status = 200, description = "A page of rules", body = PageBody<RuleSummary>))
)]
#[get("/rules")]
pub async fn list_rules(
    state: web::Data<ApiState>,
    query: web::Query<RuleQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let query = query.into_inner();
    let catalog = catalog(&state).await?;
    let q = query.q.as_deref().map(str::to_lowercase);
    let matching: Vec<RuleSummary> = catalog
        .rules
        .rules
        .values()
        .map(|rule| &rule.file)
        .filter(|r| query.framework.as_ref().is_none_or(|f| r.references.contains_key(f)))
        .filter(|r| query.severity.as_ref().is_none_or(|s| r.severity.as_str() == s))
        .filter(|r| query.category.as_ref().is_none_or(|c| &r.category == c))
        .filter(|r| {
            query.platform.as_ref().is_none_or(|family| {
                serde_json::to_value(&r.platforms)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .is_some_and(|ps| ps.iter().any(|p| p["family"].as_str() == Some(family.as_str())))
            })
        })
        .filter(|r| {
            q.as_ref().is_none_or(|q| r.id.to_lowercase().contains(q) || r.title.to_lowercase().contains(q))
        })
        .map(|r| RuleSummary {
            id: r.id.clone(),
            title: r.title.clone(),
            severity: r.severity.as_str().to_owned(),
            category: r.category.clone(),
            tags: r.tags.clone(),
            frameworks: r.references.clone(),
            platforms: serde_json::to_value(&r.platforms).unwrap_or_default(),
            manual: r.manual,
        })
        .collect();
    let total = matching.len() as u64;
    let items: Vec<RuleSummary> = matching
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .collect();
    Ok(HttpResponse::Ok().insert_header((TOTAL_COUNT, total)).json(PageBody {
        items,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// One rule as written (checks, variables, remediation included).
#[utoipa::path(
    tag = "rules",
    security(("bearer" = ["rules:read"])),
    params(("rule_id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = Object),
        (status = 404, description = "`rule_not_found`", body = ErrorBody),
    )
)]
#[get("/rules/{rule_id}")]
pub async fn get_rule(state: web::Data<ApiState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let catalog = catalog(&state).await?;
    let rule = catalog
        .rules
        .rules
        .get(path.as_str())
        .ok_or_else(|| ApiError::not_found("rule_not_found", "no rule with this id"))?;
    Ok(HttpResponse::Ok().json(&rule.file))
}

/// Coverage of one framework.
#[derive(Debug, Serialize, ToSchema)]
pub struct FrameworkSummary {
    /// Framework id.
    pub id: String,
    /// Controls in the framework.
    pub controls_total: usize,
    /// Of them, automated (testable) controls.
    pub automated_total: usize,
    /// Controls referenced by at least one rule.
    pub covered_total: usize,
    /// Automated controls referenced by an automated rule.
    pub covered_automated: usize,
    /// Rules referencing the framework.
    pub rules: usize,
}

/// Every framework with its coverage, computed from the corpus.
#[utoipa::path(
    tag = "rules",
    security(("bearer" = ["rules:read"])),
    responses((status = 200, description = "Frameworks", body = Vec<FrameworkSummary>))
)]
#[get("/frameworks")]
pub async fn list_frameworks(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let catalog = catalog(&state).await?;
    let items: Vec<FrameworkSummary> = catalog
        .coverage
        .frameworks
        .iter()
        .map(|c| FrameworkSummary {
            id: c.framework.clone(),
            controls_total: c.total,
            automated_total: c.automated,
            covered_total: c.covered,
            covered_automated: c.covered_automated,
            rules: c.rules,
        })
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

/// A framework control and the rules covering it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlCoverage {
    /// Control id.
    pub id: String,
    /// Levels / profiles.
    pub levels: Vec<String>,
    /// Whether the control is automated (testable).
    pub automated: bool,
    /// Rules referencing it.
    pub rules: Vec<String>,
}

/// A framework's controls.
#[derive(Debug, Serialize, ToSchema)]
pub struct FrameworkDetail {
    /// Coverage numbers.
    pub summary: FrameworkSummary,
    /// Every control.
    pub controls: Vec<ControlCoverage>,
}

/// One framework's controls and the rules covering each.
#[utoipa::path(
    tag = "rules",
    security(("bearer" = ["rules:read"])),
    params(("framework_id" = String, Path, description = "Framework id")),
    responses(
        (status = 200, description = "The framework", body = FrameworkDetail),
        (status = 404, description = "`framework_not_found`", body = ErrorBody),
    )
)]
#[get("/frameworks/{framework_id}")]
pub async fn get_framework(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = catalog(&state).await?;
    let id = path.into_inner();
    let not_found = || ApiError::not_found("framework_not_found", "no framework with this id");
    let framework = catalog.frameworks.iter().find(|f| f.id == id).ok_or_else(not_found)?;
    let coverage = catalog.coverage.frameworks.iter().find(|c| c.framework == id).ok_or_else(not_found)?;
    let controls = framework
        .controls
        .iter()
        .map(|control| ControlCoverage {
            id: control.id.clone(),
            levels: control.levels.clone(),
            automated: control.is_automated(),
            rules: catalog
                .rules
                .rules
                .values()
                .filter(|r| r.file.references.get(&id).is_some_and(|ids| ids.contains(&control.id)))
                .map(|r| r.file.id.clone())
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(FrameworkDetail {
        summary: FrameworkSummary {
            id: coverage.framework.clone(),
            controls_total: coverage.total,
            automated_total: coverage.automated,
            covered_total: coverage.covered,
            covered_automated: coverage.covered_automated,
            rules: coverage.rules,
        },
        controls,
    }))
}
