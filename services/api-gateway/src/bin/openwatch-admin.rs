//! `openwatch-admin`: administrative commands that must not be reachable over HTTP.
//!
//! `create-admin` creates a `super_admin` account — the only way the first account comes to
//! exist (there is no default password and no self-registration). The password comes from
//! `OPENWATCH_ADMIN_PASSWORD` (checked against the password policy) or is generated and
//! printed once. `create-api-token` mints an expiring API token for an existing account
//! (audited; printed once, never stored in clear) — how `make run` drives the API on later
//! runs without knowing the administrator's password. Database: `OPENWATCH_DATABASE_URL`.
//! Exit codes: 0 done, 1 refused (bad input, name taken, unknown user), 2 failure
//! (database unreachable).

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use clap::{Parser, Subcommand};
use openwatch_common::access::{Permission, Role};
use openwatch_common::ids::{ApiTokenId, UserId};
use openwatch_db::queries::api_tokens::{self, NewApiToken};
use openwatch_db::queries::audit::{self, AuditOutcome, NewAuditEvent};
use openwatch_db::queries::users::{self, NewUser};
use openwatch_db::{AsyncConnection, DbError, PoolConfig};
use openwatch_secrets::{PasswordPolicy, password, tokens};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(name = "openwatch-admin", about = "OpenWatch administration (run on a trusted host)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a super_admin account (password from OPENWATCH_ADMIN_PASSWORD, or generated and printed once).
    CreateAdmin {
        /// Username of the new account.
        #[arg(long)]
        username: String,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Do nothing (exit 0) when an active super_admin already exists.
        #[arg(long)]
        if_none_exists: bool,
    },
    /// Mint an API token for an existing active user; prints only the token.
    CreateApiToken {
        /// The token's owner.
        #[arg(long)]
        username: String,
        /// Token name.
        #[arg(long, default_value = "openwatch-admin")]
        name: String,
        /// Comma-separated scopes (default: every permission of the user's role).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Minutes until the token expires (1–1440).
        #[arg(long, default_value_t = 30)]
        expires_in_minutes: u32,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openwatch-admin: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn generated_password() -> anyhow::Result<SecretString> {
    // Two backup-code style groups per word, four words: ~160 bits, easy to type.
    let words = tokens::generate_backup_codes(4).context("generating a password")?;
    Ok(SecretString::from(words.iter().map(|w| w.expose_secret().to_owned()).collect::<Vec<_>>().join("-")))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CreateAdmin { username, email, if_none_exists } => {
            create_admin(username, email, if_none_exists).await
        }
        Command::CreateApiToken { username, name, scopes, expires_in_minutes } => {
            create_api_token(username, name, scopes, expires_in_minutes).await
        }
    }
}

async fn create_api_token(
    username: String,
    name: String,
    scopes: Vec<String>,
    expires_in_minutes: u32,
) -> anyhow::Result<ExitCode> {
    if !(1..=1440).contains(&expires_in_minutes) {
        eprintln!("openwatch-admin: --expires-in-minutes must be 1–1440");
        return Ok(ExitCode::from(1));
    }
    let pool = openwatch_db::build_pool(&PoolConfig::from_env().context("OPENWATCH_DATABASE_URL")?)?;
    let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
    let Some(user) =
        users::find_for_login(&mut conn, username.trim()).await?.map(|c| c.user).filter(|u| u.is_active)
    else {
        eprintln!("openwatch-admin: no active user `{username}`");
        return Ok(ExitCode::from(1));
    };
    let mut permissions = Vec::new();
    for scope in scopes.iter().filter(|s| !s.trim().is_empty()) {
        match scope.trim().parse::<Permission>() {
            Ok(p) if user.role.allows(p) => permissions.push(p),
            Ok(p) => {
                eprintln!("openwatch-admin: `{}` does not hold `{p}`", user.username);
                return Ok(ExitCode::from(1));
            }
            Err(e) => {
                eprintln!("openwatch-admin: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    if permissions.is_empty() {
        permissions = user.role.permissions().to_vec();
    }
    let (secret, prefix) = tokens::generate_api_token().context("generating a token")?;
    let token = NewApiToken {
        id: ApiTokenId::new(),
        user_id: user.id,
        name,
        token_prefix: prefix,
        token_hash: tokens::sha256(secret.expose_secret()),
        permissions,
        expires_at: Some(Utc::now() + TimeDelta::minutes(i64::from(expires_in_minutes))),
    };
    conn.transaction::<_, DbError, _>(async |conn| {
        let stored = api_tokens::insert_api_token(conn, token).await?;
        audit::record(
            conn,
            &NewAuditEvent {
                actor_user_id: Some(user.id),
                actor_name: user.username.clone(),
                action: "api_token.create".to_owned(),
                resource_type: "api_token".to_owned(),
                resource_id: Some(stored.id.0.to_string()),
                outcome: AuditOutcome::Success,
                ip: None,
                details: serde_json::json!({"name": stored.name, "via": "openwatch-admin"}),
            },
        )
        .await?;
        Ok(())
    })
    .await?;
    println!("{}", secret.expose_secret());
    Ok(ExitCode::SUCCESS)
}

async fn create_admin(
    username: String,
    email: Option<String>,
    if_none_exists: bool,
) -> anyhow::Result<ExitCode> {
    let username = username.trim().to_owned();
    if username.is_empty()
        || username.len() > 128
        || !username.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        eprintln!("openwatch-admin: invalid username: use 1–128 of A-Z a-z 0-9 . _ @ -");
        return Ok(ExitCode::from(1));
    }
    let pool = openwatch_db::build_pool(&PoolConfig::from_env().context("OPENWATCH_DATABASE_URL")?)?;
    let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
    if if_none_exists && users::any_super_admin_exists(&mut conn).await? {
        println!("An active super_admin already exists; nothing to do.");
        return Ok(ExitCode::SUCCESS);
    }
    let (password, generated) = match std::env::var("OPENWATCH_ADMIN_PASSWORD") {
        Ok(given) if !given.is_empty() => (SecretString::from(given), false),
        _ => (generated_password()?, true),
    };
    if let Err(violation) = PasswordPolicy::default().check(&password, &username) {
        eprintln!("openwatch-admin: OPENWATCH_ADMIN_PASSWORD refused: {violation}");
        return Ok(ExitCode::from(1));
    }
    let hash = password::hash_password(&password).context("hashing the password")?;
    let id = UserId::new();
    let new_user = NewUser {
        id,
        username: username.clone(),
        email,
        display_name: None,
        password_hash: hash,
        role: Role::SuperAdmin,
    };
    let created = conn
        .transaction::<_, DbError, _>(async |conn| {
            let user = users::insert_user(conn, new_user).await?;
            audit::record(
                conn,
                &NewAuditEvent {
                    actor_user_id: None,
                    actor_name: "openwatch-admin".to_owned(),
                    action: "user.create".to_owned(),
                    resource_type: "user".to_owned(),
                    resource_id: Some(user.id.0.to_string()),
                    outcome: AuditOutcome::Success,
                    ip: None,
                    details: serde_json::json!({"username": user.username, "role": "super_admin", "via": "cli"}),
                },
            )
            .await?;
            Ok(user)
        })
        .await;
    match created {
        Ok(user) => {
            println!("Created super_admin `{}` ({}).", user.username, user.id.0);
            if generated {
                println!("Password (shown once, store it now): {}", password.expose_secret());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(DbError::Conflict { .. }) => {
            eprintln!("openwatch-admin: a user named `{username}` already exists");
            Ok(ExitCode::from(1))
        }
        Err(other) => Err(other.into()),
    }
}
