//! `openwatch-migrate` — applies, reverts or inspects the OpenWatch database migrations.
//!
//! ```text
//! openwatch-migrate [up|down-all|redo|status]     (default: up)
//! ```
//!
//! * `up` — create the database if it does not exist, then apply pending migrations.
//! * `down-all` — revert every migration (destroys all data).
//! * `redo` — revert the latest migration and apply it again.
//! * `status` — list applied and pending migrations.
//!
//! Reads `OPENWATCH_DATABASE_URL`. Exit codes: 0 success, 1 failure, 2 usage or
//! configuration error.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use openwatch_db::{DbError, migrate};
use secrecy::ExposeSecret;

const USAGE: &str = "usage: openwatch-migrate [up|down-all|redo|status]\n\
    reads OPENWATCH_DATABASE_URL (postgres://user@host:5432/database)";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.as_slice() {
        [] => "up",
        [one] if matches!(one.as_str(), "-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [one] => one.as_str(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !matches!(command, "up" | "down-all" | "redo" | "status") {
        eprintln!("unknown command `{command}`\n{USAGE}");
        return ExitCode::from(2);
    }
    let url = match openwatch_db::PoolConfig::from_env() {
        Ok(config) => config.url.expose_secret().to_owned(),
        Err(e) => {
            eprintln!("openwatch-migrate: {e}");
            return ExitCode::from(2);
        }
    };
    match run(command, &url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openwatch-migrate {command}: {e}");
            if matches!(e, DbError::Config(_)) { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

async fn run(command: &str, url: &str) -> Result<(), DbError> {
    let database = openwatch_db::pool::database_name(url)?;
    match command {
        "up" => {
            if migrate::create_database_if_missing(url).await? {
                println!("created database `{database}`");
            }
            let applied = migrate::run_pending(url).await?;
            if applied.is_empty() {
                println!("database `{database}` is up to date");
            }
            for version in &applied {
                println!("applied {version}");
            }
        }
        "down-all" => {
            let reverted = migrate::revert_all(url).await?;
            if reverted.is_empty() {
                println!("nothing to revert in `{database}`");
            }
            for version in &reverted {
                println!("reverted {version}");
            }
        }
        "redo" => {
            let version = migrate::redo_last(url).await?;
            println!("reverted and re-applied {version}");
        }
        _ => {
            let applied = migrate::applied(url).await?;
            let pending = migrate::pending(url).await?;
            println!("database `{database}`: {} applied, {} pending", applied.len(), pending.len());
            for name in &pending {
                println!("pending {name}");
            }
        }
    }
    Ok(())
}
