-- Operations: alerts, rule exceptions and the audit log.

CREATE TABLE alerts (
    id              UUID PRIMARY KEY,
    -- What kind of alert (`host_down`, `rule_failed`, `score_dropped`, …).
    alert_type      TEXT NOT NULL CHECK (alert_type ~ '^[a-z][a-z0-9_]*$'),
    -- CASCADE: an alert about a host that no longer exists cannot be acted on.
    host_id         UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    -- NULL for host-level alerts.
    rule_id         TEXT,
    severity        TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title           TEXT NOT NULL,
    details         JSONB NOT NULL DEFAULT '{}',
    opened_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Re-raising an unresolved alert bumps these instead of inserting a duplicate.
    last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    occurrences     INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    -- SET NULL: the acknowledgement stays on record after the user goes.
    acknowledged_by UUID REFERENCES users (id) ON DELETE SET NULL,
    acknowledged_at TIMESTAMPTZ,
    resolved_at     TIMESTAMPTZ,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);

-- Deduplication: at most one unresolved alert per type, host and rule.
-- Raise with INSERT … ON CONFLICT (alert_type, host_id, coalesce(rule_id, ''))
-- WHERE status <> 'resolved' DO UPDATE SET last_seen_at = …, occurrences = occurrences + 1.
CREATE UNIQUE INDEX alerts_dedup_key
    ON alerts (alert_type, host_id, coalesce(rule_id, '')) WHERE status <> 'resolved';
CREATE INDEX alerts_host_id_idx ON alerts (host_id);
CREATE INDEX alerts_acknowledged_by_idx ON alerts (acknowledged_by);
CREATE INDEX alerts_unresolved_idx ON alerts (opened_at DESC) WHERE status <> 'resolved';

-- An exception waives one rule on one host for a bounded time, under four-eyes approval.
CREATE TABLE exceptions (
    id            UUID PRIMARY KEY,
    -- CASCADE: the waiver is about this host only.
    host_id       UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    rule_id       TEXT NOT NULL,
    reason        TEXT NOT NULL CHECK (length(reason) > 0),
    status        TEXT NOT NULL DEFAULT 'requested'
        CHECK (status IN ('requested', 'approved', 'rejected', 'revoked', 'expired')),
    -- SET NULL (both): the decision stays on record after an account is deleted; who did
    -- what is also preserved by name in audit_events.
    requested_by  UUID REFERENCES users (id) ON DELETE SET NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_by    UUID REFERENCES users (id) ON DELETE SET NULL,
    decided_at    TIMESTAMPTZ,
    decision_note TEXT,
    expires_at    TIMESTAMPTZ NOT NULL,
    -- Four eyes: nobody approves (or rejects) their own request.
    CONSTRAINT exceptions_four_eyes CHECK (decided_by <> requested_by),
    CHECK (status = 'requested' OR decided_at IS NOT NULL),
    CHECK (expires_at > requested_at)
);

CREATE INDEX exceptions_host_id_rule_id_idx ON exceptions (host_id, rule_id);
CREATE INDEX exceptions_requested_by_idx ON exceptions (requested_by);
CREATE INDEX exceptions_decided_by_idx ON exceptions (decided_by);
-- At most one open (requested or approved) exception per host and rule.
CREATE UNIQUE INDEX exceptions_one_open_key
    ON exceptions (host_id, rule_id) WHERE status IN ('requested', 'approved');
-- For the expiry job.
CREATE INDEX exceptions_approved_expires_at_idx ON exceptions (expires_at) WHERE status = 'approved';

-- Append-only audit log. bigserial: a gap-tolerant total order, cheap to page through.
CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    -- SET NULL: the audit trail must survive user deletion; `actor_name` keeps who it was.
    actor_user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    -- Username at the time (or `system` for automated actions).
    actor_name    TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (length(action) > 0),
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    -- Client address; the cast rejects anything that is not an IP address.
    ip            TEXT CHECK (ip IS NULL OR ip::inet IS NOT NULL),
    details       JSONB NOT NULL DEFAULT '{}',
    occurred_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX audit_events_actor_user_id_idx ON audit_events (actor_user_id);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id);
