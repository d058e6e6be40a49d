//! `openwatch-admin create-admin`: the only way the first account comes to exist.

use std::process::Command;

use openwatch_test_support::database::TestDatabase;
use openwatch_test_support::redis::TestRedis;

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-admin");

fn create_admin(db: &TestDatabase, args: &[&str], password: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("create-admin")
        .args(args)
        .env("OPENWATCH_DATABASE_URL", db.url())
        .env_remove("OPENWATCH_ADMIN_PASSWORD");
    if let Some(password) = password {
        command.env("OPENWATCH_ADMIN_PASSWORD", password);
    }
    let output = command.output().expect("run openwatch-admin");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn create_admin_prints_a_generated_password_once_that_logs_in() {
    let db = TestDatabase::new().await;
    let (code, stdout, stderr) = create_admin(&db, &["--username", "root-admin"], None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Password (shown once, store it now): "))
        .expect("the generated password is printed")
        .to_owned();
    assert!(password.len() >= 20);

    // A second admin with the same name is refused; --if-none-exists is a no-op now.
    let (code, _, stderr) = create_admin(&db, &["--username", "ROOT-ADMIN"], Some("another long passphrase"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    let (code, stdout, _) = create_admin(&db, &["--username", "second", "--if-none-exists"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to do"), "{stdout}");

    let app = TestApp::spawn_on(db, TestRedis::new(), |_| {}).await;
    let login = app.login("root-admin", &password).await;
    assert_eq!(login.status, 200, "{:?}", login.json);
    assert_eq!(login.json["user"]["role"], "super_admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_admin_refuses_weak_passwords_and_bad_usernames() {
    let db = TestDatabase::new().await;
    let (code, _, stderr) = create_admin(&db, &["--username", "admin"], Some("admin123"));
    assert_eq!(code, 1);
    assert!(stderr.contains("refused"), "{stderr}");
    let (code, _, stderr) = create_admin(&db, &["--username", "bad name"], Some("a long enough passphrase"));
    assert_eq!(code, 1, "{stderr}");
    let (code, stdout, stderr) =
        create_admin(&db, &["--username", "chosen"], Some("a long enough passphrase"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("a long enough passphrase"), "a given password is never echoed");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_api_token_mints_a_working_scoped_expiring_token() {
    let db = TestDatabase::new().await;
    let (code, _, stderr) = create_admin(&db, &["--username", "ops"], Some("a long enough passphrase"));
    assert_eq!(code, 0, "{stderr}");
    let url = db.url();
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("create-api-token")
            .args(args)
            .env("OPENWATCH_DATABASE_URL", &url)
            .output()
            .expect("run openwatch-admin");
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let (code, token) = run(&["--username", "ops", "--scopes", "profile:self"]);
    assert_eq!(code, 0);
    assert!(token.starts_with("owk_"), "{token}");
    assert_eq!(run(&["--username", "nobody"]).0, 1);
    assert_eq!(run(&["--username", "ops", "--scopes", "hosts:nuke"]).0, 1);
    assert_eq!(run(&["--username", "ops", "--expires-in-minutes", "0"]).0, 1);

    let app = TestApp::spawn_on(db, TestRedis::new(), |_| {}).await;
    let me = app.get("/api/auth/me", &token).await;
    assert_eq!(me.status, 200, "{:?}", me.json);
    // Scoped: nothing beyond profile:self.
    assert_eq!(app.get("/api/auth/tokens", &token).await.status, 200);
    let (code, full) = run(&["--username", "ops"]);
    assert_eq!(code, 0);
    assert_eq!(app.get("/api/openapi.json", &full).await.status, 200);
}
