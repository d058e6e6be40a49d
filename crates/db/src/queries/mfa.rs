//! TOTP multi-factor authentication: enrolment, activation, replay refusal and the
//! single-use backup codes.
//!
//! Life cycle: [`set_pending_totp`] stores a freshly generated secret (sealed by the
//! gateway with AES-256-GCM) while `mfa_enabled` stays false; once the user proves
//! possession with a first code, [`enable_mfa`] turns MFA on and stores the backup codes;
//! [`disable_mfa`] removes the secret and the codes. Every check that must hold across
//! gateway replicas (a code used once, a backup code used once) is one conditional
//! `UPDATE`, so two replicas racing on the same code cannot both accept it.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::UserId;
use uuid::Uuid;

use crate::DbError;
use crate::schema::{mfa_backup_codes, users};

/// How many backup codes the gateway issues when MFA is enabled.
pub const BACKUP_CODE_COUNT: usize = 10;

/// A TOTP secret sealed with AES-256-GCM by the gateway (associated data = the user id);
/// the database never sees it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTotp {
    /// Ciphertext with the GCM tag.
    pub ciphertext: Vec<u8>,
    /// 96-bit nonce, unique per encryption.
    pub nonce: [u8; 12],
    /// Which key sealed it.
    pub key_id: String,
}

impl std::fmt::Debug for SealedTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTotp").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Stores a new, not yet confirmed TOTP secret, replacing any pending one and forgetting
/// the last accepted step. Returns `false` (and changes nothing) when MFA is already
/// enabled: disable it first, so an active secret is never swapped without proof.
/// [`DbError::NotFound`] when the user does not exist.
pub async fn set_pending_totp(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    secret: &SealedTotp,
) -> Result<bool, DbError> {
    let updated = diesel::update(users::table.find(user_id.into_uuid()).filter(users::mfa_enabled.eq(false)))
        .set((
            users::totp_ciphertext.eq(&secret.ciphertext),
            users::totp_nonce.eq(secret.nonce.as_slice()),
            users::totp_key_id.eq(&secret.key_id),
            users::totp_last_step.eq(None::<i64>),
        ))
        .execute(conn)
        .await?;
    if updated == 1 {
        return Ok(true);
    }
    let exists: bool =
        diesel::select(diesel::dsl::exists(users::table.find(user_id.into_uuid()))).get_result(conn).await?;
    if exists { Ok(false) } else { Err(DbError::NotFound) }
}

#[derive(QueryableByName)]
struct EnableRow {
    #[diesel(sql_type = BigInt)]
    enabled: i64,
}

/// Turns MFA on for the pending secret and replaces the backup codes with
/// `backup_code_hashes` (SHA-256 of each code, normally [`BACKUP_CODE_COUNT`] of them), in
/// one statement. Calling it again while enabled only replaces the codes (regeneration).
/// [`DbError::NotFound`] when the user does not exist; [`DbError::Constraint`]
/// (`users_mfa_needs_totp`) when no secret was enrolled; [`DbError::Conflict`] when a
/// hash is repeated.
pub async fn enable_mfa(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    backup_code_hashes: &[[u8; 32]],
) -> Result<(), DbError> {
    let ids: Vec<Uuid> = backup_code_hashes.iter().map(|_| Uuid::now_v7()).collect();
    let hashes: Vec<&[u8]> = backup_code_hashes.iter().map(|h| h.as_slice()).collect();
    // Data-modifying CTEs all run to completion and see the same snapshot: the old codes
    // are deleted and the new ones inserted only when the user row was updated.
    let row: EnableRow = diesel::sql_query(
        "WITH enabled AS ( \
             UPDATE users SET mfa_enabled = true WHERE id = $1 RETURNING id \
         ), removed AS ( \
             DELETE FROM mfa_backup_codes WHERE user_id IN (SELECT id FROM enabled) \
         ), inserted AS ( \
             INSERT INTO mfa_backup_codes (id, user_id, code_hash) \
             SELECT c.id, e.id, c.code_hash FROM enabled e, unnest($2::uuid[], $3::bytea[]) AS c (id, code_hash) \
             RETURNING 1 \
         ) \
         SELECT (SELECT count(*) FROM enabled) AS enabled",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id.into_uuid())
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Bytea>, _>(hashes)
    .get_result(conn)
    .await?;
    if row.enabled == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Turns MFA off: clears the secret (pending or active) and the last step, and deletes
/// the backup codes, in one statement. [`DbError::NotFound`] when the user does not exist.
pub async fn disable_mfa(conn: &mut AsyncPgConnection, user_id: UserId) -> Result<(), DbError> {
    let updated = diesel::sql_query(
        "WITH removed AS (DELETE FROM mfa_backup_codes WHERE user_id = $1) \
         UPDATE users SET mfa_enabled = false, totp_ciphertext = NULL, totp_nonce = NULL, \
                          totp_key_id = NULL, totp_last_step = NULL \
         WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id.into_uuid())
    .execute(conn)
    .await?;
    if updated == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Records that the code of time step `step` was accepted, if no code of this or a later
/// step was accepted before; returns whether it advanced. `false` means a replay (or an
/// older code after a newer one, or no secret at all): refuse the login. Atomic, so it
/// holds across gateway replicas.
pub async fn advance_totp_step(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    step: u64,
) -> Result<bool, DbError> {
    // Steps beyond i64 are ~1.4e20 seconds away: no valid code has one.
    let Ok(step) = i64::try_from(step) else { return Ok(false) };
    let updated = diesel::update(
        users::table
            .find(user_id.into_uuid())
            .filter(users::totp_ciphertext.is_not_null())
            .filter(users::totp_last_step.is_null().or(users::totp_last_step.lt(step))),
    )
    .set(users::totp_last_step.eq(step))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks the unused backup code with this hash as used; returns whether one was (so each
/// code works once, even when two requests race).
pub async fn use_backup_code(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    code_hash: &[u8; 32],
) -> Result<bool, DbError> {
    let updated = diesel::update(
        mfa_backup_codes::table
            .filter(mfa_backup_codes::user_id.eq(user_id.into_uuid()))
            .filter(mfa_backup_codes::code_hash.eq(code_hash.as_slice()))
            .filter(mfa_backup_codes::used_at.is_null()),
    )
    .set(mfa_backup_codes::used_at.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// How many unused backup codes the user has left.
pub async fn remaining_backup_codes(conn: &mut AsyncPgConnection, user_id: UserId) -> Result<i64, DbError> {
    Ok(mfa_backup_codes::table
        .filter(mfa_backup_codes::user_id.eq(user_id.into_uuid()))
        .filter(mfa_backup_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}
