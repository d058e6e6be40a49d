//! `GET /api/users` and `GET /api/users/{id}`.

use actix_web::{HttpResponse, get, web};
use openwatch_common::access::Role;
use openwatch_common::ids::UserId;
use openwatch_db::queries::users::{self, UserFilter, UserSort};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::UserResponse;
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{Order, PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Longest accepted search text.
const MAX_QUERY_CHARS: usize = 256;

/// Sort key of the user list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserSortParam {
    /// Username, case-insensitive.
    #[default]
    Username,
    /// Creation time.
    CreatedAt,
}

/// Filters and sorting of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Only this role.
    #[param(value_type = Option<String>, example = "auditor")]
    pub role: Option<Role>,
    /// Only active (`true`) or inactive (`false`) accounts.
    pub active: Option<bool>,
    /// Case-insensitive substring of username, email or display name.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Sort key (default `username`).
    pub sort: Option<UserSortParam>,
    /// Sort direction (default `asc`).
    pub order: Option<Order>,
}

/// Lists user accounts.
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:read"])),
    params(UserQuery, PageParams),
    responses(
        (status = 200, description = "One page of users; `X-Total-Count` has the total", body = PageBody<UserResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/users")]
pub async fn list_users(
    state: web::Data<ApiState>,
    query: web::Query<UserQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let UserQuery { role, active, q, sort, order } = query.into_inner();
    if q.as_deref().is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        return Err(ApiError::bad_request("invalid_query", "q must be at most 256 characters"));
    }
    let filter = UserFilter { role, active, q };
    let sort = match sort.unwrap_or_default() {
        UserSortParam::Username => UserSort::Username,
        UserSortParam::CreatedAt => UserSort::CreatedAt,
    };
    let mut conn = state.pool.get().await?;
    let users = users::list_users(&mut conn, &filter, sort, order.unwrap_or_default().into(), page).await?;
    Ok(page_response(users, page, UserResponse::from))
}

/// One user account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:read"])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    )
)]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let user = users::get_user(&mut conn, UserId(path.into_inner()))
        .await
        .map_err(|e| ApiError::from_db("user", e))?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}
