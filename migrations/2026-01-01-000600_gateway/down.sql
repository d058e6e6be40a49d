DROP TRIGGER audit_events_no_truncate ON audit_events;
DROP TRIGGER audit_events_append_only ON audit_events;
DROP FUNCTION openwatch_audit_events_append_only();
DROP TABLE host_maintenance_windows;
ALTER TABLE api_tokens DROP COLUMN permissions;
DROP TABLE mfa_backup_codes;
ALTER TABLE users
    DROP CONSTRAINT users_mfa_needs_totp,
    DROP CONSTRAINT users_totp_parts_together,
    DROP COLUMN totp_last_step,
    DROP COLUMN totp_key_id,
    DROP COLUMN totp_nonce,
    DROP COLUMN totp_ciphertext,
    DROP COLUMN mfa_enabled;
