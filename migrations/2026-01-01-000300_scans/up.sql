-- Scanning and posture: scans, findings, the per-rule "now" view, daily snapshots, drift.
--
-- Host deletion CASCADEs through all of this: deleting a host is an explicit, audited
-- administrator action, and results of a host that no longer exists have no owner.

CREATE TABLE scans (
    id               UUID PRIMARY KEY,
    -- CASCADE: see the header.
    host_id          UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    trigger          TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled')),
    -- Framework filter (e.g. `cis-debian12`); NULL = every applicable rule.
    framework        TEXT,
    status           TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    -- SET NULL: the scan stays in history when its requester's account is deleted.
    requested_by     UUID REFERENCES users (id) ON DELETE SET NULL,
    queued_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    rules_total      INTEGER NOT NULL DEFAULT 0 CHECK (rules_total >= 0),
    rules_done       INTEGER NOT NULL DEFAULT 0 CHECK (rules_done >= 0),
    score            DOUBLE PRECISION CHECK (score BETWEEN 0 AND 100),
    failure_reason   TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A running scan whose lease passed is considered abandoned by its worker.
    lease_expires_at TIMESTAMPTZ,
    CHECK (rules_done <= rules_total),
    CHECK ((status IN ('completed', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

-- Scan history of a host (also the FK index).
CREATE INDEX scans_host_id_queued_at_idx ON scans (host_id, queued_at DESC);
CREATE INDEX scans_requested_by_idx ON scans (requested_by);
-- Active scans (dashboards, lease reaper).
CREATE INDEX scans_active_idx ON scans (status, lease_expires_at) WHERE status IN ('queued', 'running');

-- One row per rule result; written in bulk (multi-row insert or COPY).
CREATE TABLE scan_findings (
    -- CASCADE: findings are part of their scan.
    scan_id     UUID NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    rule_id     TEXT NOT NULL,
    -- Denormalised from the scan for per-host queries. CASCADE: see the header.
    host_id     UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'not_applicable', 'manual')),
    severity    TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    -- Why the status is error / not_applicable / manual.
    reason      TEXT,
    -- `EvidenceV1`: source, excerpt, expected, actual.
    evidence    JSONB NOT NULL,
    -- Framework id → control ids.
    frameworks  JSONB NOT NULL DEFAULT '{}',
    duration_us BIGINT NOT NULL CHECK (duration_us >= 0),
    PRIMARY KEY (scan_id, rule_id)
);

CREATE INDEX scan_findings_host_id_rule_id_idx ON scan_findings (host_id, rule_id);

-- Latest status per host × rule: the "now" view.
CREATE TABLE host_rule_state (
    -- CASCADE: see the header.
    host_id      UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    rule_id      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'not_applicable', 'manual')),
    severity     TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    -- SET NULL: pruning old scans must not erase the current state.
    last_scan_id UUID REFERENCES scans (id) ON DELETE SET NULL,
    -- When the status last changed (not when it was last evaluated).
    changed_at   TIMESTAMPTZ NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL,
    evidence     JSONB NOT NULL,
    PRIMARY KEY (host_id, rule_id)
);

CREATE INDEX host_rule_state_last_scan_id_idx ON host_rule_state (last_scan_id);
-- "Which hosts fail rule X" across the fleet.
CREATE INDEX host_rule_state_rule_id_status_idx ON host_rule_state (rule_id, status);

-- One snapshot per host and day, for trends and point-in-time reports.
CREATE TABLE posture_snapshots (
    -- CASCADE: see the header.
    host_id       UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    snapshot_date DATE NOT NULL,
    score         DOUBLE PRECISION NOT NULL CHECK (score BETWEEN 0 AND 100),
    -- framework id → {passed, failed, score, …}
    per_framework JSONB NOT NULL DEFAULT '{}',
    -- severity → {passed, failed}
    per_severity  JSONB NOT NULL DEFAULT '{}',
    -- rule id → status
    rule_states   JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, snapshot_date)
);

-- A rule changed status on a host, or the host's score moved.
CREATE TABLE drift_events (
    id              UUID PRIMARY KEY,
    -- CASCADE: see the header.
    host_id         UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    -- SET NULL: drift history outlives scan retention.
    scan_id         UUID REFERENCES scans (id) ON DELETE SET NULL,
    -- NULL for a score-only drift.
    rule_id         TEXT,
    -- NULL when the rule had no previous state.
    previous_status TEXT CHECK (previous_status IN ('pass', 'fail', 'error', 'not_applicable', 'manual')),
    current_status  TEXT CHECK (current_status IN ('pass', 'fail', 'error', 'not_applicable', 'manual')),
    severity        TEXT CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    previous_score  DOUBLE PRECISION CHECK (previous_score BETWEEN 0 AND 100),
    current_score   DOUBLE PRECISION CHECK (current_score BETWEEN 0 AND 100),
    detected_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (rule_id IS NOT NULL OR current_score IS NOT NULL)
);

CREATE INDEX drift_events_host_id_detected_at_idx ON drift_events (host_id, detected_at DESC);
CREATE INDEX drift_events_scan_id_idx ON drift_events (scan_id);
