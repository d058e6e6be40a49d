//! The diesel migrations of `migrations/`, embedded in the binary, and helpers to apply,
//! revert and inspect them.
//!
//! Migrations run in a one-shot step (`openwatch-migrate up`, `make migrate`, the test
//! template), never at service boot, so N service instances never race on DDL.
//!
//! The helpers use diesel-async's `AsyncMigrationHarness`, which blocks in place
//! (`tokio::task::block_in_place`): they need the **multi-thread** tokio runtime and
//! return [`DbError::Migration`] on a current-thread runtime instead of panicking.

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::DbError;
use crate::pool::{database_name, with_database};

/// Every migration of the repository's `migrations/` directory, in order.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Bound on connecting to the server.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The database every PostgreSQL server has; used to create other databases.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// Applies every pending migration; returns the versions applied (oldest first).
pub async fn run_pending(url: &str) -> Result<Vec<String>, DbError> {
    let mut harness = harness(url).await?;
    let applied = harness.run_pending_migrations(MIGRATIONS).map_err(migration_error)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// Reverts every applied migration (newest first); returns the versions reverted.
/// Only diesel's `__diesel_schema_migrations` bookkeeping table remains.
pub async fn revert_all(url: &str) -> Result<Vec<String>, DbError> {
    let mut harness = harness(url).await?;
    let reverted = harness.revert_all_migrations(MIGRATIONS).map_err(migration_error)?;
    Ok(reverted.iter().map(ToString::to_string).collect())
}

/// Reverts the most recently applied migration and applies it again (checks that its
/// `down.sql` really reverses its `up.sql`); returns its version.
pub async fn redo_last(url: &str) -> Result<String, DbError> {
    let mut harness = harness(url).await?;
    let reverted = harness.revert_last_migration(MIGRATIONS).map_err(migration_error)?;
    harness.run_pending_migrations(MIGRATIONS).map_err(migration_error)?;
    Ok(reverted.to_string())
}

/// Names (`version_name`) of the migrations not applied yet, oldest first.
pub async fn pending(url: &str) -> Result<Vec<String>, DbError> {
    let mut harness = harness(url).await?;
    let pending = harness.pending_migrations(MIGRATIONS).map_err(migration_error)?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

/// Versions of the migrations already applied.
pub async fn applied(url: &str) -> Result<Vec<String>, DbError> {
    let mut harness = harness(url).await?;
    let applied = harness.applied_migrations().map_err(migration_error)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// Names of every embedded migration, oldest first.
pub fn all() -> Result<Vec<String>, DbError> {
    let migrations = MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(migration_error)?;
    Ok(migrations.iter().map(|m| m.name().to_string()).collect())
}

/// Creates the database named in `url` when it does not exist, connecting to the
/// [`MAINTENANCE_DATABASE`] of the same server. Returns whether it was created.
pub async fn create_database_if_missing(url: &str) -> Result<bool, DbError> {
    use diesel::sql_types::Text;

    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }

    let name = database_name(url)?;
    let admin_url = with_database(url, MAINTENANCE_DATABASE)?;
    let mut conn = establish(&admin_url).await?;
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(&name)
            .get_result(&mut conn)
            .await?;
    if found.exists {
        return Ok(false);
    }
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name))).execute(&mut conn).await {
        Ok(_) => Ok(true),
        // Someone else created it meanwhile: fine.
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Quotes an SQL identifier (`"` doubled), for statements that cannot take parameters
/// such as `CREATE DATABASE`.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn harness(url: &str) -> Result<AsyncMigrationHarness<AsyncPgConnection>, DbError> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !multi_thread {
        return Err(DbError::Migration(
            "migrations need a multi-thread tokio runtime (AsyncMigrationHarness blocks in place)".into(),
        ));
    }
    let conn = establish(url).await?;
    Ok(AsyncMigrationHarness::new(conn))
}

/// Connects, bounded by [`CONNECT_TIMEOUT`] so a hung server cannot block the tool forever.
async fn establish(url: &str) -> Result<AsyncPgConnection, DbError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => {
            Err(DbError::Unavailable(format!("no connection to PostgreSQL within {CONNECT_TIMEOUT:?}")))
        }
    }
}

fn migration_error(err: Box<dyn std::error::Error + Send + Sync>) -> DbError {
    DbError::Migration(err.to_string())
}
