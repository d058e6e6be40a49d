// @generated automatically by Diesel CLI.

diesel::table! {
    alerts (id) {
        id -> Uuid,
        alert_type -> Text,
        host_id -> Uuid,
        rule_id -> Nullable<Text>,
        severity -> Text,
        status -> Text,
        title -> Text,
        details -> Jsonb,
        opened_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        occurrences -> Int4,
        acknowledged_by -> Nullable<Uuid>,
        acknowledged_at -> Nullable<Timestamptz>,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        token_prefix -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        permissions -> Array<Nullable<Text>>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        actor_user_id -> Nullable<Uuid>,
        actor_name -> Text,
        action -> Text,
        resource_type -> Text,
        resource_id -> Nullable<Text>,
        outcome -> Text,
        ip -> Nullable<Text>,
        details -> Jsonb,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    credentials (id) {
        id -> Uuid,
        scope -> Text,
        host_id -> Nullable<Uuid>,
        group_id -> Nullable<Uuid>,
        name -> Text,
        username -> Text,
        auth_method -> Text,
        ciphertext -> Bytea,
        nonce -> Bytea,
        key_id -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    drift_events (id) {
        id -> Uuid,
        host_id -> Uuid,
        scan_id -> Nullable<Uuid>,
        rule_id -> Nullable<Text>,
        previous_status -> Nullable<Text>,
        current_status -> Nullable<Text>,
        severity -> Nullable<Text>,
        previous_score -> Nullable<Float8>,
        current_score -> Nullable<Float8>,
        detected_at -> Timestamptz,
    }
}

diesel::table! {
    exceptions (id) {
        id -> Uuid,
        host_id -> Uuid,
        rule_id -> Text,
        reason -> Text,
        status -> Text,
        requested_by -> Nullable<Uuid>,
        requested_at -> Timestamptz,
        decided_by -> Nullable<Uuid>,
        decided_at -> Nullable<Timestamptz>,
        decision_note -> Nullable<Text>,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    host_group_members (group_id, host_id) {
        group_id -> Uuid,
        host_id -> Uuid,
        added_at -> Timestamptz,
    }
}

diesel::table! {
    host_groups (id) {
        id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    host_maintenance_windows (id) {
        id -> Uuid,
        host_id -> Uuid,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        reason -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    host_rule_state (host_id, rule_id) {
        host_id -> Uuid,
        rule_id -> Text,
        status -> Text,
        severity -> Text,
        last_scan_id -> Nullable<Uuid>,
        changed_at -> Timestamptz,
        evaluated_at -> Timestamptz,
        evidence -> Jsonb,
    }
}

diesel::table! {
    hosts (id) {
        id -> Uuid,
        name -> Text,
        address -> Text,
        port -> Int4,
        os_family -> Nullable<Text>,
        os_version -> Nullable<Text>,
        tags -> Array<Nullable<Text>>,
        monitoring_state -> Text,
        last_check_at -> Nullable<Timestamptz>,
        next_check_at -> Timestamptz,
        compliance_state -> Text,
        last_score -> Nullable<Float8>,
        next_scan_at -> Timestamptz,
        scan_failures -> Int4,
        maintenance_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_backup_codes (id) {
        id -> Uuid,
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        queue -> Text,
        message_id -> Uuid,
        message_type -> Text,
        version -> Int2,
        payload -> Jsonb,
        traceparent -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    posture_snapshots (host_id, snapshot_date) {
        host_id -> Uuid,
        snapshot_date -> Date,
        score -> Float8,
        per_framework -> Jsonb,
        per_severity -> Jsonb,
        rule_states -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    processed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_sessions (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    roles (name) {
        name -> Text,
        description -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    scan_findings (scan_id, rule_id) {
        scan_id -> Uuid,
        rule_id -> Text,
        host_id -> Uuid,
        status -> Text,
        severity -> Text,
        reason -> Nullable<Text>,
        evidence -> Jsonb,
        frameworks -> Jsonb,
        duration_us -> Int8,
    }
}

diesel::table! {
    scans (id) {
        id -> Uuid,
        host_id -> Uuid,
        trigger -> Text,
        framework -> Nullable<Text>,
        status -> Text,
        requested_by -> Nullable<Uuid>,
        queued_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        rules_total -> Int4,
        rules_done -> Int4,
        score -> Nullable<Float8>,
        failure_reason -> Nullable<Text>,
        attempts -> Int4,
        lease_expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    scheduler_config (id) {
        id -> Int2,
        interval_critical_minutes -> Int4,
        interval_low_minutes -> Int4,
        interval_partial_minutes -> Int4,
        interval_mostly_compliant_minutes -> Int4,
        interval_compliant_minutes -> Int4,
        interval_unknown_minutes -> Int4,
        max_interval_minutes -> Int4,
        failure_backoff_base_minutes -> Int4,
        updated_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    ssh_known_hosts (id) {
        id -> Uuid,
        host_id -> Uuid,
        key_type -> Text,
        fingerprint_sha256 -> Text,
        public_key -> Nullable<Text>,
        status -> Text,
        first_seen_at -> Timestamptz,
        approved_by -> Nullable<Uuid>,
        approved_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        email -> Nullable<Text>,
        display_name -> Nullable<Text>,
        password_hash -> Text,
        role -> Text,
        is_active -> Bool,
        failed_login_attempts -> Int4,
        locked_until -> Nullable<Timestamptz>,
        last_login_at -> Nullable<Timestamptz>,
        password_changed_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        mfa_enabled -> Bool,
        totp_ciphertext -> Nullable<Bytea>,
        totp_nonce -> Nullable<Bytea>,
        totp_key_id -> Nullable<Text>,
        totp_last_step -> Nullable<Int8>,
    }
}

diesel::joinable!(alerts -> hosts (host_id));
diesel::joinable!(alerts -> users (acknowledged_by));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(audit_events -> users (actor_user_id));
diesel::joinable!(credentials -> host_groups (group_id));
diesel::joinable!(credentials -> hosts (host_id));
diesel::joinable!(drift_events -> hosts (host_id));
diesel::joinable!(drift_events -> scans (scan_id));
diesel::joinable!(exceptions -> hosts (host_id));
diesel::joinable!(host_group_members -> host_groups (group_id));
diesel::joinable!(host_group_members -> hosts (host_id));
diesel::joinable!(host_maintenance_windows -> hosts (host_id));
diesel::joinable!(host_maintenance_windows -> users (created_by));
diesel::joinable!(host_rule_state -> hosts (host_id));
diesel::joinable!(host_rule_state -> scans (last_scan_id));
diesel::joinable!(mfa_backup_codes -> users (user_id));
diesel::joinable!(posture_snapshots -> hosts (host_id));
diesel::joinable!(refresh_sessions -> users (user_id));
diesel::joinable!(scan_findings -> hosts (host_id));
diesel::joinable!(scan_findings -> scans (scan_id));
diesel::joinable!(scans -> hosts (host_id));
diesel::joinable!(scans -> users (requested_by));
diesel::joinable!(scheduler_config -> users (updated_by));
diesel::joinable!(ssh_known_hosts -> hosts (host_id));
diesel::joinable!(ssh_known_hosts -> users (approved_by));
diesel::joinable!(users -> roles (role));

diesel::allow_tables_to_appear_in_same_query!(
    alerts,
    api_tokens,
    audit_events,
    credentials,
    drift_events,
    exceptions,
    host_group_members,
    host_groups,
    host_maintenance_windows,
    host_rule_state,
    hosts,
    mfa_backup_codes,
    outbox,
    posture_snapshots,
    processed_messages,
    refresh_sessions,
    roles,
    scan_findings,
    scans,
    scheduler_config,
    ssh_known_hosts,
    users,
);
