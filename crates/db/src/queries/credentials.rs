//! SSH credentials: sealed secrets and their metadata.
//!
//! The application encrypts a secret with AES-256-GCM before it reaches this module, using
//! the credential id as associated data; that is why [`NewCredential`] carries an id the
//! caller chose (and why [`replace_secret`] keeps the id). Plaintext never reaches the
//! database. Listing and reading return [`CredentialMetadata`], which has no field for the
//! ciphertext, and those queries do not even select it: only [`resolve_for_host`] (used by
//! whoever opens the SSH connection) returns the sealed secret.
//!
//! # Scopes and resolution order
//! A credential is scoped to one host, one group, or the whole system; at most one exists
//! per host, per group and for the system (a second one is [`DbError::Conflict`]:
//! `credentials_host_id_key`, `credentials_group_id_key`, `credentials_one_system_key`).
//! [`resolve_for_host`] picks, in one statement:
//! 1. the host's own credential;
//! 2. else the credential of one of the host's groups — the group with the lowest name
//!    (then lowest id), so the choice is deterministic when several groups have one;
//! 3. else the system default;
//! 4. else none.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::ids::{CredentialId, HostGroupId, HostId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest};
use crate::schema::{credentials, host_group_members, host_groups};

/// How the credential authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The secret is a password.
    Password,
    /// The secret is an OpenSSH private key (PEM).
    PrivateKey,
}

impl AuthMethod {
    /// The stable storage and wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PrivateKey => "private_key",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "password" => Ok(Self::Password),
            "private_key" => Ok(Self::PrivateKey),
            _ => Err(UnknownVariant {
                kind: "auth method",
                value: s.to_owned(),
                expected: "password, private_key".to_owned(),
            }),
        }
    }
}

/// What a credential applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialScope {
    /// The system default, used when neither the host nor its groups have one.
    System,
    /// Every member of this group without a credential of its own.
    Group(HostGroupId),
    /// This host only.
    Host(HostId),
}

impl CredentialScope {
    /// The kind of scope, without its target.
    pub const fn kind(self) -> CredentialScopeKind {
        match self {
            Self::System => CredentialScopeKind::System,
            Self::Group(_) => CredentialScopeKind::Group,
            Self::Host(_) => CredentialScopeKind::Host,
        }
    }

    fn host_id(self) -> Option<Uuid> {
        match self {
            Self::Host(id) => Some(id.into_uuid()),
            _ => None,
        }
    }

    fn group_id(self) -> Option<Uuid> {
        match self {
            Self::Group(id) => Some(id.into_uuid()),
            _ => None,
        }
    }
}

/// The kind of a [`CredentialScope`] (the `scope` column), for filtering lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialScopeKind {
    /// The system default.
    System,
    /// Group-scoped.
    Group,
    /// Host-scoped.
    Host,
}

impl CredentialScopeKind {
    /// The stable storage and wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Group => "group",
            Self::Host => "host",
        }
    }
}

impl fmt::Display for CredentialScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialScopeKind {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Self::System),
            "group" => Ok(Self::Group),
            "host" => Ok(Self::Host),
            _ => Err(UnknownVariant {
                kind: "credential scope",
                value: s.to_owned(),
                expected: "system, group, host".to_owned(),
            }),
        }
    }
}

/// Which credentials [`list_credentials`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFilter {
    /// Every credential of this kind (e.g. all host-scoped ones).
    Kind(CredentialScopeKind),
    /// The credential of exactly this scope (at most one exists).
    Exactly(CredentialScope),
}

/// A credential to store, already sealed by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// Chosen by the caller before encrypting: it is the associated data of the seal.
    pub id: CredentialId,
    /// What it applies to.
    pub scope: CredentialScope,
    /// Display name.
    pub name: String,
    /// SSH user name.
    pub username: String,
    /// Password or private key.
    pub auth_method: AuthMethod,
    /// AES-256-GCM ciphertext (with tag) of the secret.
    pub ciphertext: Vec<u8>,
    /// The 96-bit nonce used for this encryption.
    pub nonce: [u8; 12],
    /// Which key sealed it.
    pub key_id: String,
}

impl fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCredential")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("username", &self.username)
            .field("auth_method", &self.auth_method)
            .field("ciphertext", &format_args!("<{} bytes>", self.ciphertext.len()))
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Everything about a credential except its secret: what lists, reads and API responses
/// carry. It has no ciphertext field by design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialMetadata {
    /// Id (also the associated data of the seal).
    pub id: CredentialId,
    /// What it applies to.
    pub scope: CredentialScope,
    /// Display name.
    pub name: String,
    /// SSH user name.
    pub username: String,
    /// Password or private key.
    pub auth_method: AuthMethod,
    /// Which key sealed the secret.
    pub key_id: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// A credential with its sealed secret, for the component that decrypts it and connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredential {
    /// Everything but the secret.
    pub metadata: CredentialMetadata,
    /// AES-256-GCM ciphertext (with tag).
    pub ciphertext: Vec<u8>,
    /// The nonce of that encryption.
    pub nonce: [u8; 12],
    /// Which key sealed it (same as `metadata.key_id`).
    pub key_id: String,
}

impl fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential")
            .field("metadata", &self.metadata)
            .field("ciphertext", &format_args!("<{} bytes>", self.ciphertext.len()))
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The metadata columns; the secret columns are deliberately absent.
#[derive(Queryable, Selectable)]
#[diesel(table_name = credentials, check_for_backend(diesel::pg::Pg))]
struct MetadataRow {
    id: Uuid,
    scope: String,
    host_id: Option<Uuid>,
    group_id: Option<Uuid>,
    name: String,
    username: String,
    auth_method: String,
    key_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<MetadataRow> for CredentialMetadata {
    type Error = DbError;

    fn try_from(row: MetadataRow) -> Result<Self, DbError> {
        let invalid = |what: String| DbError::InvalidData(format!("credential {}: {what}", row.id));
        let scope = match (row.scope.as_str(), row.host_id, row.group_id) {
            ("system", None, None) => CredentialScope::System,
            ("group", None, Some(group)) => CredentialScope::Group(HostGroupId(group)),
            ("host", Some(host), None) => CredentialScope::Host(HostId(host)),
            (scope, _, _) => {
                return Err(invalid(format!("scope `{scope}` does not match its target columns")));
            }
        };
        Ok(CredentialMetadata {
            id: CredentialId(row.id),
            scope,
            auth_method: row.auth_method.parse().map_err(|e| invalid(format!("{e}")))?,
            name: row.name,
            username: row.username,
            key_id: row.key_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = credentials, check_for_backend(diesel::pg::Pg))]
struct SealedRow {
    #[diesel(embed)]
    metadata: MetadataRow,
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
}

impl TryFrom<SealedRow> for SealedCredential {
    type Error = DbError;

    fn try_from(row: SealedRow) -> Result<Self, DbError> {
        let metadata = CredentialMetadata::try_from(row.metadata)?;
        let nonce = <[u8; 12]>::try_from(row.nonce.as_slice()).map_err(|_| {
            DbError::InvalidData(format!("credential {}: nonce is not 12 bytes", metadata.id))
        })?;
        Ok(SealedCredential { key_id: metadata.key_id.clone(), metadata, ciphertext: row.ciphertext, nonce })
    }
}

/// Stores a sealed credential. A second credential for the same host, group or the
/// system is [`DbError::Conflict`]; an unknown host or group, an empty name, user name,
/// ciphertext or key id is [`DbError::Constraint`].
pub async fn insert_credential(
    conn: &mut AsyncPgConnection,
    credential: NewCredential,
) -> Result<CredentialMetadata, DbError> {
    let row: MetadataRow = diesel::insert_into(credentials::table)
        .values((
            credentials::id.eq(credential.id.into_uuid()),
            credentials::scope.eq(credential.scope.kind().as_str()),
            credentials::host_id.eq(credential.scope.host_id()),
            credentials::group_id.eq(credential.scope.group_id()),
            credentials::name.eq(credential.name),
            credentials::username.eq(credential.username),
            credentials::auth_method.eq(credential.auth_method.as_str()),
            credentials::ciphertext.eq(credential.ciphertext),
            credentials::nonce.eq(credential.nonce.to_vec()),
            credentials::key_id.eq(credential.key_id),
        ))
        .returning(MetadataRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Replaces the secret (and the user name and method that go with it) of a credential,
/// keeping its id and scope; the caller sealed the new secret with the same id as
/// associated data and a fresh nonce. [`DbError::NotFound`] when there is no such
/// credential.
pub async fn replace_secret(
    conn: &mut AsyncPgConnection,
    id: CredentialId,
    auth_method: AuthMethod,
    username: &str,
    ciphertext: &[u8],
    nonce: &[u8; 12],
    key_id: &str,
) -> Result<CredentialMetadata, DbError> {
    let row: MetadataRow = diesel::update(credentials::table.find(id.into_uuid()))
        .set((
            credentials::auth_method.eq(auth_method.as_str()),
            credentials::username.eq(username),
            credentials::ciphertext.eq(ciphertext),
            credentials::nonce.eq(nonce.as_slice()),
            credentials::key_id.eq(key_id),
        ))
        .returning(MetadataRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Renames a credential. [`DbError::NotFound`] when there is no such credential.
pub async fn update_metadata(
    conn: &mut AsyncPgConnection,
    id: CredentialId,
    name: &str,
) -> Result<CredentialMetadata, DbError> {
    let row: MetadataRow = diesel::update(credentials::table.find(id.into_uuid()))
        .set(credentials::name.eq(name))
        .returning(MetadataRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Deletes a credential. [`DbError::NotFound`] when there is no such credential.
pub async fn delete_credential(conn: &mut AsyncPgConnection, id: CredentialId) -> Result<(), DbError> {
    let deleted = diesel::delete(credentials::table.find(id.into_uuid())).execute(conn).await?;
    if deleted == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// The metadata of one credential, or [`DbError::NotFound`].
pub async fn get_metadata(
    conn: &mut AsyncPgConnection,
    id: CredentialId,
) -> Result<CredentialMetadata, DbError> {
    let row: MetadataRow =
        credentials::table.find(id.into_uuid()).select(MetadataRow::as_select()).get_result(conn).await?;
    row.try_into()
}

fn filtered(filter: Option<ScopeFilter>) -> credentials::BoxedQuery<'static, Pg> {
    let query = credentials::table.into_boxed();
    match filter {
        None => query,
        Some(ScopeFilter::Kind(kind)) => query.filter(credentials::scope.eq(kind.as_str())),
        Some(ScopeFilter::Exactly(CredentialScope::System)) => query.filter(credentials::scope.eq("system")),
        Some(ScopeFilter::Exactly(CredentialScope::Group(group))) => {
            query.filter(credentials::group_id.eq(group.into_uuid()))
        }
        Some(ScopeFilter::Exactly(CredentialScope::Host(host))) => {
            query.filter(credentials::host_id.eq(host.into_uuid()))
        }
    }
}

/// One page of credential metadata (optionally only one scope kind or one exact scope),
/// by name then id, with the total number of matches. Never selects the secret.
pub async fn list_credentials(
    conn: &mut AsyncPgConnection,
    filter: Option<ScopeFilter>,
    page: PageRequest,
) -> Result<Page<CredentialMetadata>, DbError> {
    let total: i64 = filtered(filter).count().get_result(conn).await?;
    let rows: Vec<MetadataRow> = filtered(filter)
        .order_by((credentials::name.asc(), credentials::id.asc()))
        .select(MetadataRow::as_select())
        .limit(page.sql_limit())
        .offset(page.sql_offset())
        .load(conn)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(CredentialMetadata::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// The credential to use for a host: its own, else its lowest-named group's, else the
/// system default (see the module docs), with the sealed secret; `None` when none
/// applies. Does not check that the host exists (an unknown host gets the system default).
pub async fn resolve_for_host(
    conn: &mut AsyncPgConnection,
    host: HostId,
) -> Result<Option<SealedCredential>, DbError> {
    let host = host.into_uuid();
    let groups_of_host = host_group_members::table
        .filter(host_group_members::host_id.eq(host))
        .select(host_group_members::group_id.nullable());
    let row: Option<SealedRow> = credentials::table
        .left_join(host_groups::table)
        .filter(
            credentials::host_id
                .eq(host)
                .or(credentials::group_id.eq_any(groups_of_host))
                .or(credentials::scope.eq("system")),
        )
        .order_by(
            sql::<Integer>("CASE credentials.scope WHEN 'host' THEN 0 WHEN 'group' THEN 1 ELSE 2 END").asc(),
        )
        .then_order_by(host_groups::name.asc())
        .then_order_by(host_groups::id.asc())
        .select(SealedRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(SealedCredential::try_from).transpose()
}
