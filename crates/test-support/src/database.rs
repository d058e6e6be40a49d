//! A fresh PostgreSQL database per test, cloned from a migrated template.
//!
//! [`TestDatabase::new`] returns a uniquely named database (`openwatch_test_<uuid>`),
//! fully migrated, created with `CREATE DATABASE … TEMPLATE openwatch_tpl_<hash>`. The
//! template is migrated once per migrations content: its name carries a hash of every
//! file under `migrations/`, so a changed migration gets a new template. Building it is
//! guarded by a PostgreSQL advisory lock, so parallel test processes (nextest runs each
//! test in its own) never race; it is built under a temporary name and renamed only when
//! complete, so a crash mid-build never leaves a half-migrated template.
//!
//! [`TestDatabase::empty`] returns a fresh database with no migrations (migration tests).
//!
//! Dropping the fixture drops the database (`WITH (FORCE)`), on its own thread and
//! runtime, so it works from inside an async test.
//!
//! The server comes from `OPENWATCH_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the database in the URL is only used
//! to create and drop others).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::ScanTrigger;
use openwatch_common::ids::{HostId, ScanId};
use openwatch_db::migrate::{self, quote_ident};
use openwatch_db::pool::with_database;
use openwatch_db::queries::hosts::{self, NewHost};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::{Pool, PoolConfig};

/// Default server URL when `OPENWATCH_TEST_DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Advisory lock key serialising template builds ("OWTPL" in ASCII).
const TEMPLATE_LOCK_KEY: i64 = 0x004F_5754_504C;

/// One test's own database; dropped with the fixture.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    pool: Pool,
}

impl TestDatabase {
    /// A fresh, fully migrated database. Needs the multi-thread tokio runtime the first
    /// time the template is built (`#[tokio::test(flavor = "multi_thread")]`).
    pub async fn new() -> Self {
        let admin_url = admin_url();
        let template = ensure_template(&admin_url).await;
        Self::create(admin_url, Some(&template)).await
    }

    /// A fresh database without any migration applied.
    pub async fn empty() -> Self {
        Self::create(admin_url(), None).await
    }

    async fn create(admin_url: String, template: Option<&str>) -> Self {
        let name = format!("openwatch_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(&admin_url).await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&name), quote_ident(t)),
            None => format!("CREATE DATABASE {}", quote_ident(&name)),
        };
        diesel::sql_query(sql).execute(&mut admin).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
        let url = with_database(&admin_url, &name).expect("valid test database URL");
        let pool = openwatch_db::build_pool(&PoolConfig {
            max_size: 8,
            connect_timeout: Duration::from_secs(10),
            ..PoolConfig::new(url.clone())
        })
        .expect("test pool");
        Self { name, url, admin_url, pool }
    }

    /// Connection URL of this database.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A pool on this database (shared: clones of one pool).
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new, unpooled connection to this database.
    pub async fn connect(&self) -> AsyncPgConnection {
        connect(&self.url).await
    }

    /// Registers a host on 127.0.0.1:`port` named `name` (unique per database).
    pub async fn insert_host(&self, name: &str, port: u16) -> HostId {
        let id = HostId::new();
        let host = NewHost { id, name: name.to_owned(), address: "127.0.0.1".into(), port, tags: vec![] };
        hosts::insert_host(&mut self.pool.get().await.expect("pooled connection"), host)
            .await
            .expect("insert host");
        id
    }

    /// A host and a manual scan of it in state `queued`.
    pub async fn insert_queued_scan(&self) -> (HostId, ScanId) {
        let host = self.insert_host(&format!("scanned-{}", uuid::Uuid::new_v4().simple()), 22).await;
        let scan = ScanId::new();
        let new_scan = NewScan {
            id: scan,
            host_id: host,
            trigger: ScanTrigger::Manual,
            framework: None,
            requested_by: None,
        };
        scans::insert_scan(&mut self.pool.get().await.expect("pooled connection"), &new_scan)
            .await
            .expect("insert scan");
        (host, scan)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.pool.close();
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime
                .block_on(async move {
                    let mut admin =
                        AsyncPgConnection::establish(&admin_url).await.map_err(|e| e.to_string())?;
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name)))
                        .execute(&mut admin)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(())
                })
                .map_err(std::io::Error::other)
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

fn admin_url() -> String {
    std::env::var("OPENWATCH_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_owned())
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.unwrap_or_else(|e| {
        panic!("cannot connect to PostgreSQL at {url} (set OPENWATCH_TEST_DATABASE_URL; is it running?): {e}")
    })
}

/// The migrated template for the current migrations, built if missing; returns its name.
async fn ensure_template(admin_url: &str) -> String {
    let template = format!("openwatch_tpl_{:016x}", migrations_hash(&migrations_dir()));
    let building = format!("{template}_building");
    let mut admin = connect(admin_url).await;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
        let found: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await
            .expect("query pg_database");
        found.n > 0
    }

    if database_exists(&mut admin, &template).await {
        return template;
    }

    diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut admin)
        .await
        .expect("take the template advisory lock");
    // Another process may have built it while we waited for the lock.
    if !database_exists(&mut admin, &template).await {
        // A leftover from a crashed build.
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&building)))
            .execute(&mut admin)
            .await
            .expect("drop a stale template build");
        diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&building)))
            .execute(&mut admin)
            .await
            .expect("create the template database");
        let building_url = with_database(admin_url, &building).expect("template URL");
        migrate::run_pending(&building_url)
            .await
            .unwrap_or_else(|e| panic!("migrating the template database {building}: {e}"));

        // The migration connection is closed, but its backend may take a moment to exit;
        // a database cannot be renamed (or cloned) while anyone is connected to it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions: Count =
                diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1")
                    .bind::<Text, _>(&building)
                    .get_result(&mut admin)
                    .await
                    .expect("query pg_stat_activity");
            if sessions.n == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "sessions still connected to {building}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&template)
        ))
        .execute(&mut admin)
        .await
        .expect("publish the template database");
        diesel::sql_query(format!("ALTER DATABASE {} WITH IS_TEMPLATE true", quote_ident(&template)))
            .execute(&mut admin)
            .await
            .expect("mark the template database");
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut admin)
        .await
        .expect("release the template advisory lock");
    template
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// FNV-1a (64 bit) over every file's relative path and contents, in sorted order: stable
/// across processes and toolchains.
fn migrations_hash(dir: &Path) -> u64 {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                collect(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }

    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let relative = file.strip_prefix(dir).expect("file under the migrations directory");
        hash = fnv(hash, relative.to_string_lossy().as_bytes());
        hash = fnv(hash, &[0]);
        hash = fnv(hash, &std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display())));
        hash = fnv(hash, &[0]);
    }
    hash
}
