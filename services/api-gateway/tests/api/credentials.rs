//! Credentials and SSH known hosts: write-only secrets sealed with the row id as associated
//! data, validation, scope conflicts, the host → group → system resolution order, host-key
//! approval and revocation, and audit rows without secrets.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openwatch_common::access::Role;
use openwatch_common::ids::{CredentialId, HostGroupId, HostId};
use openwatch_db::queries::audit::{self, AuditFilter};
use openwatch_db::queries::credentials::{self, SealedCredential};
use openwatch_db::queries::host_groups::{self, NewHostGroup};
use openwatch_db::queries::known_hosts;
use openwatch_db::queries::page::{PageRequest, SortOrder};
use openwatch_secrets::cipher::SealedRef;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

/// A password unique to the test, easy to search for.
fn password() -> String {
    format!("Pw-{}-zebra", uuid::Uuid::new_v4().simple())
}

/// A syntactically valid OpenSSH private key with random content (the gateway checks the
/// shape only; libssh2 parses keys when connecting).
fn private_key() -> String {
    let random: Vec<u8> =
        (0..6).flat_map(|_| uuid::Uuid::new_v4().as_bytes().to_vec()).collect::<Vec<u8>>().repeat(4);
    let body = STANDARD.encode(random);
    let lines: Vec<&str> =
        body.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).expect("base64 is ascii")).collect();
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", lines.join("\n"))
}

/// The strings that must never appear anywhere a secret could leak: the secret, its
/// base64 forms and, for a key, every body line.
fn forbidden_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_owned(),
    ];
    forms.extend(
        secret.lines().map(str::trim).filter(|l| l.len() >= 16 && !l.starts_with("-----")).map(str::to_owned),
    );
    forms
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in forbidden_forms(secret) {
            assert!(!text.contains(&form), "{what} leaks a secret ({form:?}): {text}");
        }
    }
}

/// A response that carries credential metadata: no secret, no secret-bearing field.
fn assert_metadata_only(what: &str, resp: &Resp, secrets: &[&str]) {
    assert_no_secret(what, &resp.raw.body, secrets);
    for field in ["password", "private_key", "passphrase", "ciphertext", "nonce", "secret"] {
        assert!(
            !resp.raw.body.contains(&format!("\"{field}\":")),
            "{what} has a `{field}` field: {}",
            resp.raw.body
        );
    }
}

async fn group_with(app: &TestApp, name: &str, hosts: &[HostId]) -> HostGroupId {
    let mut conn = app.db.pool().get().await.unwrap();
    let id = HostGroupId::new();
    host_groups::insert_group(&mut conn, NewHostGroup { id, name: name.to_owned(), description: None })
        .await
        .unwrap();
    host_groups::add_members(&mut conn, id, hosts).await.unwrap();
    id
}

async fn sealed_for(app: &TestApp, host: HostId) -> SealedCredential {
    let mut conn = app.db.pool().get().await.unwrap();
    credentials::resolve_for_host(&mut conn, host).await.unwrap().expect("a credential for the host")
}

fn open(app: &TestApp, sealed: &SealedCredential, ad: CredentialId) -> Option<Value> {
    let record = SealedRef { ciphertext: &sealed.ciphertext, nonce: &sealed.nonce, key_id: &sealed.key_id };
    let text = app.state.cipher.open_string(&record, ad.0.as_bytes()).ok()?;
    Some(serde_json::from_str(text.expose_secret()).unwrap())
}

fn id_of(resp: &Resp) -> CredentialId {
    CredentialId(resp.json["id"].as_str().unwrap().parse().unwrap())
}

async fn effective(app: &TestApp, token: &str, host: uuid::Uuid) -> Resp {
    app.get(&format!("/api/hosts/{host}/effective-credential"), token).await
}

async fn create(app: &TestApp, token: &str, body: Value) -> Resp {
    app.post("/api/credentials", token, &body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn both_auth_methods_are_created_and_the_secret_is_never_returned() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("web-1", 22).await;
    let group = group_with(&app, "web", &[host]).await;
    let (pw, key, pass) = (password(), private_key(), password());
    let secrets = [pw.as_str(), key.as_str(), pass.as_str()];

    let by_password = create(
        &app,
        &token,
        json!({"name": "web-1 root", "scope": "host", "host_id": host.0, "username": "root",
               "auth_method": "password", "password": pw}),
    )
    .await;
    assert_eq!(by_password.status, 201, "{}", by_password.raw.body);
    assert_metadata_only("create (password)", &by_password, &secrets);
    let j = &by_password.json;
    assert_eq!(
        (&j["name"], &j["scope"], &j["host_id"], &j["group_id"], &j["username"], &j["auth_method"]),
        (
            &json!("web-1 root"),
            &json!("host"),
            &json!(host.0),
            &Value::Null,
            &json!("root"),
            &json!("password")
        )
    );
    assert_eq!(j["key_id"], app.state.cipher.active_key_id());
    assert!(j["created_at"].is_string() && j["updated_at"].is_string());

    let by_key = create(
        &app,
        &token,
        json!({"name": "web group key", "scope": "group", "group_id": group.0, "username": "scanner",
               "auth_method": "private_key", "private_key": key, "passphrase": pass}),
    )
    .await;
    assert_eq!(by_key.status, 201, "{}", by_key.raw.body);
    assert_metadata_only("create (key)", &by_key, &secrets);
    assert_eq!((&by_key.json["scope"], &by_key.json["group_id"]), (&json!("group"), &json!(group.0)));
    assert_eq!(by_key.json["auth_method"], "private_key");

    let system = create(
        &app,
        &token,
        json!({"name": "default", "scope": "system", "username": "ow", "auth_method": "private_key",
               "private_key": key}),
    )
    .await;
    assert_eq!(system.status, 201, "{}", system.raw.body);

    let list = app.get("/api/credentials", &token).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["total"], 3);
    assert_eq!(list.header("x-total-count"), Some("3"));
    assert_metadata_only("list", &list, &secrets);
    for created in [&by_password, &by_key, &system] {
        let get = app.get(&format!("/api/credentials/{}", id_of(created).0), &token).await;
        assert_eq!(get.status, 200);
        assert_eq!(get.json, created.json);
        assert_metadata_only("get", &get, &secrets);
    }
    let effective = app.get(&format!("/api/hosts/{}/effective-credential", host.0), &token).await;
    assert_eq!(effective.status, 200);
    assert_metadata_only("effective", &effective, &secrets);

    let new_pw = password();
    let replaced = app
        .request(
            "PUT",
            &format!("/api/credentials/{}/secret", id_of(&by_password).0),
            Some(&token),
            Some(&json!({"username": "admin", "auth_method": "password", "password": new_pw})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.raw.body);
    assert_metadata_only("replace", &replaced, &[&pw, &key, &pass, &new_pw]);

    // Error answers do not echo the secret either.
    let bad = create(
        &app,
        &token,
        json!({"name": "x", "scope": "system", "username": "u", "auth_method": "password",
               "password": pw, "private_key": key}),
    )
    .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_secret"));
    assert_no_secret("error", &bad.raw.body, &secrets);

    // The audit log has every change, and none of the secrets.
    let mut conn = app.db.pool().get().await.unwrap();
    let filter = AuditFilter { resource_type: Some("credential".into()), ..AuditFilter::default() };
    let events = audit::query(&mut conn, &filter, PageRequest::default(), SortOrder::Asc).await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["credential.create", "credential.create", "credential.create", "credential.replace_secret"]
    );
    assert_eq!(events.items[0].resource_id.as_deref(), Some(id_of(&by_password).0.to_string().as_str()));
    assert_eq!(events.items[0].details["name"], "web-1 root");
    assert_eq!(events.items[0].details["scope"], "host");
    assert_eq!(events.items[0].details["auth_method"], "password");
    assert_eq!(events.items[3].details["auth_method"], "password");
    for event in &events.items {
        assert_no_secret("audit details", &event.details.to_string(), &[&pw, &key, &pass, &new_pw]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stored_ciphertext_opens_only_with_its_own_row_id() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("db-1", 22).await;
    let other_host = app.db.insert_host("db-2", 22).await;
    let pw = password();
    let created = create(
        &app,
        &token,
        json!({"name": "db", "scope": "host", "host_id": host.0, "username": "root",
               "auth_method": "password", "password": pw}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.raw.body);
    let id = id_of(&created);

    let sealed = sealed_for(&app, host).await;
    assert_eq!(sealed.metadata.id, id);
    assert!(
        !sealed.ciphertext.windows(pw.len()).any(|w| w == pw.as_bytes()),
        "the database holds the plaintext"
    );
    assert_eq!(open(&app, &sealed, id), Some(json!({"password": pw})));
    assert_eq!(open(&app, &sealed, CredentialId::new()), None, "opened with another id");

    // Copy the sealed secret onto another credential's row: it no longer opens.
    let other = create(
        &app,
        &token,
        json!({"name": "db2", "scope": "host", "host_id": other_host.0, "username": "root",
               "auth_method": "password", "password": password()}),
    )
    .await;
    let other_id = id_of(&other);
    {
        let mut conn = app.db.pool().get().await.unwrap();
        credentials::replace_secret(
            &mut conn,
            other_id,
            credentials::AuthMethod::Password,
            "root",
            &sealed.ciphertext,
            &sealed.nonce,
            &sealed.key_id,
        )
        .await
        .unwrap();
    }
    let copied = sealed_for(&app, other_host).await;
    assert_eq!(copied.metadata.id, other_id);
    assert_eq!(open(&app, &copied, other_id), None, "a copied ciphertext must not open");

    // A key credential serialises key and passphrase; replacing re-seals under the same id.
    let (key, pass) = (private_key(), password());
    let replaced = app
        .request(
            "PUT",
            &format!("/api/credentials/{}/secret", id.0),
            Some(&token),
            Some(&json!({"username": "ops", "auth_method": "private_key", "private_key": key, "passphrase": pass})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.raw.body);
    assert_eq!(
        (&replaced.json["username"], &replaced.json["auth_method"]),
        (&json!("ops"), &json!("private_key"))
    );
    assert_eq!(replaced.json["id"], json!(id.0));
    let resealed = sealed_for(&app, host).await;
    assert_ne!(resealed.nonce, sealed.nonce, "a fresh nonce per seal");
    assert_eq!(open(&app, &resealed, id), Some(json!({"private_key": key, "passphrase": pass})));
    assert_eq!(open(&app, &resealed, other_id), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_secrets_and_scopes_are_400_and_store_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("h", 22).await;
    let (pw, key) = (password(), private_key());
    let base = |extra: Value| {
        let mut body = json!({"name": "n", "scope": "system", "username": "root"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake user@h";
    let mismatched_end = key.replace("END OPENSSH", "END RSA");
    let huge_key = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
        "QUFB\n".repeat(4000)
    );
    let cases: Vec<(Value, &str)> = vec![
        (base(json!({"auth_method": "password", "password": pw, "private_key": key})), "invalid_secret"),
        (base(json!({"auth_method": "password"})), "invalid_secret"),
        (base(json!({"auth_method": "private_key"})), "invalid_secret"),
        (base(json!({"auth_method": "private_key", "password": pw})), "invalid_secret"),
        (base(json!({"auth_method": "password", "private_key": key})), "invalid_secret"),
        (base(json!({"auth_method": "password", "password": pw, "passphrase": "x"})), "invalid_secret"),
        (base(json!({"auth_method": "private_key", "private_key": public_key})), "invalid_private_key"),
        (
            base(json!({"auth_method": "private_key", "private_key": "/root/.ssh/id_ed25519"})),
            "invalid_private_key",
        ),
        (base(json!({"auth_method": "private_key", "private_key": mismatched_end})), "invalid_private_key"),
        (base(json!({"auth_method": "private_key", "private_key": huge_key})), "invalid_private_key"),
        (
            base(json!({"auth_method": "private_key", "private_key": key, "passphrase": ""})),
            "invalid_passphrase",
        ),
        (base(json!({"auth_method": "password", "password": ""})), "invalid_password"),
        (base(json!({"auth_method": "password", "password": "p".repeat(1025)})), "invalid_password"),
        (base(json!({"auth_method": "kerberos", "password": pw})), "invalid_body"),
        (base(json!({"auth_method": "password", "password": pw, "token": "x"})), "invalid_body"),
        (base(json!({"auth_method": "password", "password": pw, "host_id": host.0})), "invalid_scope"),
        (base(json!({"auth_method": "password", "password": pw, "scope": "host"})), "invalid_scope"),
        (
            base(json!({"auth_method": "password", "password": pw, "scope": "group", "host_id": host.0})),
            "invalid_scope",
        ),
        (base(json!({"auth_method": "password", "password": pw, "username": "a b"})), "invalid_username"),
        (base(json!({"auth_method": "password", "password": pw, "name": "  "})), "invalid_name"),
    ];
    for (body, code) in cases {
        let resp = create(&app, &token, body.clone()).await;
        assert_eq!((resp.status, resp.code()), (400, code), "{body}: {}", resp.raw.body);
        assert_no_secret("error body", &resp.raw.body, &[&pw, &key]);
    }
    // A password of exactly 1024 characters is fine.
    let ok =
        create(&app, &token, base(json!({"auth_method": "password", "password": "p".repeat(1024)}))).await;
    assert_eq!(ok.status, 201, "{}", ok.raw.body);
    let list = app.get("/api/credentials", &token).await;
    assert_eq!(list.json["total"], 1, "only the valid credential was stored");

    // The same checks guard a secret replacement.
    let path = format!("/api/credentials/{}/secret", id_of(&ok).0);
    let both = json!({"username": "root", "auth_method": "private_key", "private_key": key, "password": pw});
    let resp = app.request("PUT", &path, Some(&token), Some(&both)).await;
    assert_eq!((resp.status, resp.code()), (400, "invalid_secret"));
    let missing = app
        .request(
            "PUT",
            &format!("/api/credentials/{}/secret", uuid::Uuid::new_v4()),
            Some(&token),
            Some(&json!({"username": "root", "auth_method": "password", "password": pw})),
        )
        .await;
    assert_eq!((missing.status, missing.code()), (404, "credential_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_credential_per_scope_and_unknown_targets_are_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("h1", 22).await;
    let group = group_with(&app, "g1", &[]).await;
    let body = |scope: &str, target: Option<(&str, uuid::Uuid)>| {
        let mut body = json!({"name": "c", "scope": scope, "username": "root", "auth_method": "password",
                              "password": password()});
        if let Some((field, id)) = target {
            body[field] = json!(id);
        }
        body
    };
    for (scope, target) in
        [("system", None), ("host", Some(("host_id", host.0))), ("group", Some(("group_id", group.0)))]
    {
        let first = create(&app, &token, body(scope, target)).await;
        assert_eq!(first.status, 201, "{}", first.raw.body);
        let second = create(&app, &token, body(scope, target)).await;
        assert_eq!((second.status, second.code()), (409, "credential_exists"), "{scope}");
    }
    let unknown_host = create(&app, &token, body("host", Some(("host_id", uuid::Uuid::new_v4())))).await;
    assert_eq!((unknown_host.status, unknown_host.code()), (422, "unknown_host"));
    let unknown_group = create(&app, &token, body("group", Some(("group_id", uuid::Uuid::new_v4())))).await;
    assert_eq!((unknown_group.status, unknown_group.code()), (422, "unknown_group"));
    assert_eq!(app.get("/api/credentials", &token).await.json["total"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_effective_credential_is_the_hosts_then_its_groups_then_the_system_one() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("app-1", 22).await;
    let lonely = app.db.insert_host("app-2", 22).await;
    // Two groups with credentials: the lowest name wins.
    let beta = group_with(&app, "beta", &[host]).await;
    let alpha = group_with(&app, "alpha", &[host]).await;
    let none = effective(&app, &token, host.0).await;
    assert_eq!((none.status, none.code()), (404, "no_credential"));
    let unknown = effective(&app, &token, uuid::Uuid::new_v4()).await;
    assert_eq!((unknown.status, unknown.code()), (404, "host_not_found"));

    let make = |scope: &str, field: Option<&str>, id: Option<uuid::Uuid>, name: &str| {
        let mut body = json!({"name": name, "scope": scope, "username": "u", "auth_method": "password",
                              "password": password()});
        if let (Some(field), Some(id)) = (field, id) {
            body[field] = json!(id);
        }
        body
    };
    let system = create(&app, &token, make("system", None, None, "sys")).await;
    let resp = effective(&app, &token, host.0).await;
    assert_eq!((resp.status, &resp.json["resolved_from"]), (200, &json!("system")), "{}", resp.raw.body);
    assert_eq!(resp.json["id"], system.json["id"]);
    assert_eq!(resp.json["name"], "sys");

    let beta_cred = create(&app, &token, make("group", Some("group_id"), Some(beta.0), "beta-cred")).await;
    let resp = effective(&app, &token, host.0).await;
    assert_eq!((&resp.json["resolved_from"], &resp.json["id"]), (&json!("group"), &beta_cred.json["id"]));
    let alpha_cred = create(&app, &token, make("group", Some("group_id"), Some(alpha.0), "alpha-cred")).await;
    let resp = effective(&app, &token, host.0).await;
    assert_eq!((&resp.json["resolved_from"], &resp.json["id"]), (&json!("group"), &alpha_cred.json["id"]));
    assert_eq!(resp.json["group_id"], json!(alpha.0));

    let own = create(&app, &token, make("host", Some("host_id"), Some(host.0), "own")).await;
    let resp = effective(&app, &token, host.0).await;
    assert_eq!((&resp.json["resolved_from"], &resp.json["id"]), (&json!("host"), &own.json["id"]));
    assert_eq!(resp.json["host_id"], json!(host.0));

    // A host in no group with no credential of its own gets the system default.
    let resp = effective(&app, &token, lonely.0).await;
    assert_eq!((&resp.json["resolved_from"], &resp.json["id"]), (&json!("system"), &system.json["id"]));

    // Deleting the host's credential falls back to the group again.
    let deleted =
        app.request("DELETE", &format!("/api/credentials/{}", id_of(&own).0), Some(&token), None).await;
    assert_eq!(deleted.status, 204);
    let resp = effective(&app, &token, host.0).await;
    assert_eq!((&resp.json["resolved_from"], &resp.json["id"]), (&json!("group"), &alpha_cred.json["id"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_list_filters_and_delete() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let h1 = app.db.insert_host("f-1", 22).await;
    let h2 = app.db.insert_host("f-2", 22).await;
    let group = group_with(&app, "fg", &[]).await;
    let mut ids = Vec::new();
    for (name, scope, field, id) in [
        ("c-host-1", "host", Some("host_id"), Some(h1.0)),
        ("b-host-2", "host", Some("host_id"), Some(h2.0)),
        ("a-group", "group", Some("group_id"), Some(group.0)),
        ("d-system", "system", None, None),
    ] {
        let mut body = json!({"name": name, "scope": scope, "username": "u", "auth_method": "password",
                              "password": password()});
        if let (Some(field), Some(id)) = (field, id) {
            body[field] = json!(id);
        }
        let resp = create(&app, &token, body).await;
        assert_eq!(resp.status, 201, "{}", resp.raw.body);
        ids.push(id_of(&resp));
    }
    let names = |resp: &Resp| -> Vec<String> {
        resp.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get("/api/credentials", &token).await;
    assert_eq!(names(&all), ["a-group", "b-host-2", "c-host-1", "d-system"]);
    let hosts_only = app.get("/api/credentials?scope=host", &token).await;
    assert_eq!(
        (names(&hosts_only), hosts_only.header("x-total-count")),
        (vec!["b-host-2".into(), "c-host-1".into()], Some("2"))
    );
    let one = app.get(&format!("/api/credentials?host_id={}", h1.0), &token).await;
    assert_eq!(names(&one), ["c-host-1"]);
    let by_group = app.get(&format!("/api/credentials?scope=group&group_id={}", group.0), &token).await;
    assert_eq!(names(&by_group), ["a-group"]);
    let paged = app.get("/api/credentials?limit=2&offset=1", &token).await;
    assert_eq!(
        (names(&paged), &paged.json["total"]),
        (vec!["b-host-2".into(), "c-host-1".into()], &json!(4))
    );
    for (query, code) in [
        (format!("host_id={}&group_id={}", h1.0, group.0), "invalid_filter"),
        (format!("scope=system&host_id={}", h1.0), "invalid_filter"),
        ("scope=planet".to_owned(), "invalid_query"),
        ("limit=0".to_owned(), "invalid_limit"),
    ] {
        let resp = app.get(&format!("/api/credentials?{query}"), &token).await;
        assert_eq!((resp.status, resp.code()), (400, code), "{query}");
    }

    let path = format!("/api/credentials/{}", ids[0].0);
    let renamed = app.request("PATCH", &path, Some(&token), Some(&json!({"name": "  web one  "}))).await;
    assert_eq!(renamed.status, 200, "{}", renamed.raw.body);
    assert_eq!(renamed.json["name"], "web one");
    assert_eq!(app.get(&path, &token).await.json["name"], "web one");
    let bad = app.request("PATCH", &path, Some(&token), Some(&json!({"name": ""}))).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_name"));
    let extra =
        app.request("PATCH", &path, Some(&token), Some(&json!({"name": "x", "scope": "system"}))).await;
    assert_eq!((extra.status, extra.code()), (400, "invalid_body"));

    assert_eq!(app.request("DELETE", &path, Some(&token), None).await.status, 204);
    let gone = app.get(&path, &token).await;
    assert_eq!((gone.status, gone.code()), (404, "credential_not_found"));
    let again = app.request("DELETE", &path, Some(&token), None).await;
    assert_eq!((again.status, again.code()), (404, "credential_not_found"));
    let renamed_missing = app.request("PATCH", &path, Some(&token), Some(&json!({"name": "x"}))).await;
    assert_eq!(renamed_missing.status, 404);
    assert_eq!(app.get("/api/credentials/not-a-uuid", &token).await.code(), "invalid_path");

    let mut conn = app.db.pool().get().await.unwrap();
    let filter = AuditFilter { resource_id: Some(ids[0].0.to_string()), ..AuditFilter::default() };
    let events = audit::query(&mut conn, &filter, PageRequest::default(), SortOrder::Asc).await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["credential.create", "credential.rename", "credential.delete"]);
    assert_eq!(events.items[1].details["previous_name"], "c-host-1");
    assert_eq!(events.items[1].details["name"], "web one");
}

#[tokio::test(flavor = "multi_thread")]
async fn known_host_keys_are_approved_and_revoked_along_the_allowed_transitions() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.db.insert_host("kh-1", 22).await;
    let other = app.db.insert_host("kh-2", 22).await;
    let (first, second, elsewhere) = {
        let mut conn = app.db.pool().get().await.unwrap();
        let first =
            known_hosts::record_seen(&mut conn, host, "ssh-ed25519", "SHA256:first", Some("AAAA1"), true)
                .await
                .unwrap();
        let second = known_hosts::record_seen(&mut conn, host, "ssh-ed25519", "SHA256:second", None, true)
            .await
            .unwrap();
        let elsewhere =
            known_hosts::record_seen(&mut conn, other, "ssh-rsa", "SHA256:else", None, false).await.unwrap();
        (first, second, elsewhere)
    };
    assert_eq!(first.status, known_hosts::KnownHostStatus::Trusted, "trust on first use");
    assert_eq!(second.status, known_hosts::KnownHostStatus::Pending);

    let list = app.get("/api/known-hosts", &token).await;
    assert_eq!((list.status, &list.json["total"]), (200, &json!(3)));
    assert_eq!(list.header("x-total-count"), Some("3"));
    let pending = app.get(&format!("/api/known-hosts?status=pending&host_id={}", host.0), &token).await;
    assert_eq!(pending.json["total"], 1);
    assert_eq!(pending.json["items"][0]["fingerprint_sha256"], "SHA256:second");
    let of_other = app.get(&format!("/api/known-hosts?host_id={}", other.0), &token).await;
    assert_eq!(of_other.json["items"][0]["id"], json!(elsewhere.id.0));
    assert_eq!(app.get("/api/known-hosts?status=maybe", &token).await.code(), "invalid_query");

    let get = app.get(&format!("/api/known-hosts/{}", first.id.0), &token).await;
    assert_eq!(get.status, 200);
    assert_eq!(
        (&get.json["status"], &get.json["key_type"], &get.json["public_key"], &get.json["approved_by"]),
        (&json!("trusted"), &json!("ssh-ed25519"), &json!("AAAA1"), &Value::Null)
    );

    // Approving the pending key trusts it, records the approver and revokes the old key.
    let approved = app.post(&format!("/api/known-hosts/{}/approve", second.id.0), &token, &json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.raw.body);
    assert_eq!(approved.json["status"], "trusted");
    assert_eq!(approved.json["approved_by"], json!(user.id.0));
    assert!(approved.json["approved_at"].is_string());
    let old = app.get(&format!("/api/known-hosts/{}", first.id.0), &token).await;
    assert_eq!(old.json["status"], "revoked");
    assert!(old.json["revoked_at"].is_string());

    // A revoked key cannot be approved again.
    let refused = app.post(&format!("/api/known-hosts/{}/approve", first.id.0), &token, &json!({})).await;
    assert_eq!((refused.status, refused.code()), (409, "invalid_transition"));
    assert_eq!(app.get(&format!("/api/known-hosts/{}", first.id.0), &token).await.json["status"], "revoked");

    // Revoking: pending → revoked directly, trusted → revoked; again is a no-op.
    let revoked = app.post(&format!("/api/known-hosts/{}/revoke", elsewhere.id.0), &token, &json!({})).await;
    assert_eq!((revoked.status, &revoked.json["status"]), (200, &json!("revoked")));
    let revoked = app.post(&format!("/api/known-hosts/{}/revoke", second.id.0), &token, &json!({})).await;
    assert_eq!((revoked.status, &revoked.json["status"]), (200, &json!("revoked")));
    let again = app.post(&format!("/api/known-hosts/{}/revoke", second.id.0), &token, &json!({})).await;
    assert_eq!((again.status, &again.json["revoked_at"]), (200, &revoked.json["revoked_at"]));
    let refused = app.post(&format!("/api/known-hosts/{}/approve", second.id.0), &token, &json!({})).await;
    assert_eq!((refused.status, refused.code()), (409, "invalid_transition"));

    let missing = uuid::Uuid::new_v4();
    for path in [
        format!("/api/known-hosts/{missing}"),
        format!("/api/known-hosts/{missing}/approve"),
        format!("/api/known-hosts/{missing}/revoke"),
    ] {
        let method = if path.ends_with(&missing.to_string()) { "GET" } else { "POST" };
        let resp = app.request(method, &path, Some(&token), Some(&json!({}))).await;
        assert_eq!((resp.status, resp.code()), (404, "known_host_not_found"), "{method} {path}");
    }

    // Each successful change is audited with the transition; refused ones are not.
    let mut conn = app.db.pool().get().await.unwrap();
    let filter = AuditFilter { resource_type: Some("known_host".into()), ..AuditFilter::default() };
    let events = audit::query(&mut conn, &filter, PageRequest::default(), SortOrder::Asc).await.unwrap();
    let summary: Vec<(&str, &str, &str)> = events
        .items
        .iter()
        .map(|e| (e.action.as_str(), e.details["from"].as_str().unwrap(), e.details["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("known_host.approve", "pending", "trusted"),
            ("known_host.revoke", "pending", "revoked"),
            ("known_host.revoke", "trusted", "revoked"),
            ("known_host.revoke", "revoked", "revoked"),
        ]
    );
    assert_eq!(events.items[0].resource_id.as_deref(), Some(second.id.0.to_string().as_str()));
    assert_eq!(events.items[0].actor_user_id, Some(user.id));
}
