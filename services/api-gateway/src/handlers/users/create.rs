//! `POST /api/users`.

use actix_web::http::header;
use actix_web::{HttpResponse, post, web};
use openwatch_common::ids::UserId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::users::{self, NewUser};
use openwatch_secrets::{PasswordPolicy, password};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{UserResponse, check_email, check_username, clean_display_name, map_user_error, parse_role};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login name: 1–128 characters of `A-Z a-z 0-9 . _ @ -`, unique case-insensitively.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    pub username: String,
    /// Contact address, unique case-insensitively.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// Name shown in the UI.
    #[schema(max_length = 128)]
    pub display_name: Option<String>,
    /// Role (`super_admin`, `security_admin`, `security_analyst`, `compliance_officer`,
    /// `auditor`, `guest`).
    #[schema(example = "security_analyst")]
    pub role: String,
    /// Initial password: at least 12 characters, not the username, not a common password.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub password: String,
}

/// Creates a user account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:write"])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserResponse),
        (status = 400, description = "`invalid_username`, `invalid_email`, `invalid_display_name`, `invalid_role`", body = ErrorBody),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 422, description = "The password breaks the policy: `password_too_short`, `password_contains_username`, `password_too_common`, …", body = ErrorBody),
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let CreateUser { username, email, display_name, role, password } = body.into_inner();
    check_username(&username)?;
    if let Some(email) = &email {
        check_email(email)?;
    }
    let display_name = display_name.as_deref().map(clean_display_name).transpose()?;
    let role = parse_role(&role)?;
    let password = SecretString::from(password);
    PasswordPolicy::default()
        .check(&password, &username)
        .map_err(|violation| ApiError::unprocessable(violation.code(), violation.to_string()))?;
    let hash = web::block(move || password::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let new = NewUser { id: UserId::new(), username, email, display_name, password_hash: hash, role };
    let mut conn = state.pool.get().await?;
    let user = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let user = users::insert_user(conn, new).await.map_err(map_user_error)?;
            let event = audit::event(
                &principal,
                &client,
                "user.create",
                "user",
                Some(user.id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"username": user.username, "role": user.role.as_str()}),
            );
            audit::record(conn, &event).await?;
            Ok(user)
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/users/{}", user.id.0)))
        .json(UserResponse::from(user)))
}
