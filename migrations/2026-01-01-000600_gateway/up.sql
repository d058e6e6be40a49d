-- Gateway: TOTP multi-factor authentication, API-token scopes, host maintenance windows and
-- append-only enforcement for the audit log.

-- TOTP secret, AES-256-GCM sealed by the application (associated data = user id), like
-- `credentials`. Enrolment stores the secret with mfa_enabled = false; confirming the first
-- code flips mfa_enabled.
ALTER TABLE users
    ADD COLUMN mfa_enabled     BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN totp_ciphertext BYTEA CHECK (length(totp_ciphertext) > 0),
    -- 96-bit GCM nonce, unique per encryption.
    ADD COLUMN totp_nonce      BYTEA CHECK (length(totp_nonce) = 12),
    -- Which key sealed the secret, so keys can rotate.
    ADD COLUMN totp_key_id     TEXT CHECK (length(totp_key_id) > 0),
    -- Last accepted 30-second time step: a code is accepted at most once (replay refusal,
    -- enforced by a conditional UPDATE so it holds across gateway replicas).
    ADD COLUMN totp_last_step  BIGINT CHECK (totp_last_step >= 0),
    -- The sealed secret is all three parts or none.
    ADD CONSTRAINT users_totp_parts_together CHECK (
        (totp_ciphertext IS NULL) = (totp_nonce IS NULL)
        AND (totp_nonce IS NULL) = (totp_key_id IS NULL)
    ),
    -- MFA cannot be on without a secret.
    ADD CONSTRAINT users_mfa_needs_totp CHECK (NOT mfa_enabled OR totp_ciphertext IS NOT NULL);

-- Single-use recovery codes, stored as SHA-256 of the code.
CREATE TABLE mfa_backup_codes (
    id         UUID PRIMARY KEY,
    -- CASCADE: a recovery code is only a way into this account.
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL CHECK (length(code_hash) = 32),
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Also the FK index; a code is looked up by user and hash.
CREATE UNIQUE INDEX mfa_backup_codes_user_id_code_hash_key ON mfa_backup_codes (user_id, code_hash);

-- Scopes of a token: spellings of `openwatch_common::access::Permission` (`hosts:read`). A
-- token is further limited by its user's role at use time. Empty = no permission at all.
ALTER TABLE api_tokens
    ADD COLUMN permissions TEXT[] NOT NULL DEFAULT '{}'
        CHECK (array_position(permissions, NULL) IS NULL);

-- Planned maintenance: checks and scans of the host are paused between starts_at and ends_at.
CREATE TABLE host_maintenance_windows (
    id         UUID PRIMARY KEY,
    -- CASCADE: a window is about this host only.
    host_id    UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    reason     TEXT,
    -- SET NULL: the window stays on record after its author's account is deleted.
    created_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

-- Windows of a host in time order (also the FK index).
CREATE INDEX host_maintenance_windows_host_id_starts_at_idx ON host_maintenance_windows (host_id, starts_at);
CREATE INDEX host_maintenance_windows_created_by_idx ON host_maintenance_windows (created_by);

-- The audit log is append-only: UPDATE and DELETE raise. The one exception is a retention
-- job, which opts in for its own transaction with
--     SET LOCAL openwatch.audit_retention = 'on';
-- before deleting old rows. Foreign-key actions are row changes too, so the
-- `actor_user_id ... ON DELETE SET NULL` rule, which must keep working when a user is deleted,
-- is let through: an UPDATE that changes nothing but actor_user_id to NULL is allowed.
-- (A superuser or the table owner can still drop the trigger: this guards against
-- application mistakes and casual tampering, not against the database owner.)
CREATE FUNCTION openwatch_audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('openwatch.audit_retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.actor_user_id IS NULL AND OLD.actor_user_id IS NOT NULL
           AND (NEW.id, NEW.actor_name, NEW.action, NEW.resource_type, NEW.resource_id, NEW.outcome,
                NEW.ip, NEW.details, NEW.occurred_at)
               IS NOT DISTINCT FROM
               (OLD.id, OLD.actor_name, OLD.action, OLD.resource_type, OLD.resource_id, OLD.outcome,
                OLD.ip, OLD.details, OLD.occurred_at) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION openwatch_audit_events_append_only();

-- TRUNCATE bypasses row triggers; refuse it as well.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION openwatch_audit_events_append_only();
