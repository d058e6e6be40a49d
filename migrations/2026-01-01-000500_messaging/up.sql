-- Messaging and scheduling: the transactional outbox, the consumers' idempotency ledger
-- and the adaptive scan schedule.

-- Rows are written in the same transaction as the change they announce; the relay
-- publishes them with broker confirms, then deletes them. bigserial: publication order.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    queue        TEXT NOT NULL CHECK (queue IN ('scans', 'compliance_scanning', 'results', 'host_monitoring',
                                                'health_monitoring', 'monitoring', 'maintenance', 'default')),
    message_id   UUID NOT NULL UNIQUE,
    message_type TEXT NOT NULL CHECK (length(message_type) > 0),
    version      SMALLINT NOT NULL CHECK (version > 0),
    payload      JSONB NOT NULL,
    -- W3C trace context of the writing transaction.
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Consumers record each message id they handled, in the same transaction as its effects,
-- so a redelivered message is recognised and skipped.
CREATE TABLE processed_messages (
    consumer     TEXT NOT NULL CHECK (length(consumer) > 0),
    message_id   UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- For retention.
CREATE INDEX processed_messages_processed_at_idx ON processed_messages (processed_at);

-- Singleton: the adaptive compliance-scan intervals, in minutes, per compliance state.
CREATE TABLE scheduler_config (
    id                                SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    interval_critical_minutes         INTEGER NOT NULL DEFAULT 60,
    interval_low_minutes              INTEGER NOT NULL DEFAULT 120,
    interval_partial_minutes          INTEGER NOT NULL DEFAULT 360,
    interval_mostly_compliant_minutes INTEGER NOT NULL DEFAULT 720,
    interval_compliant_minutes        INTEGER NOT NULL DEFAULT 1440,
    -- Never scanned: due immediately.
    interval_unknown_minutes          INTEGER NOT NULL DEFAULT 0,
    -- Cap for every interval and for the failure back-off (48 h at most).
    max_interval_minutes              INTEGER NOT NULL DEFAULT 2880 CHECK (max_interval_minutes BETWEEN 1 AND 2880),
    -- Back-off after n consecutive failures: base · 2^(n-1), capped at max_interval_minutes.
    failure_backoff_base_minutes      INTEGER NOT NULL DEFAULT 5,
    -- SET NULL: the configuration outlives the account that last changed it.
    updated_by                        UUID REFERENCES users (id) ON DELETE SET NULL,
    updated_at                        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (interval_critical_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (interval_low_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (interval_partial_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (interval_mostly_compliant_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (interval_compliant_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (interval_unknown_minutes BETWEEN 0 AND max_interval_minutes),
    CHECK (failure_backoff_base_minutes BETWEEN 1 AND max_interval_minutes)
);

CREATE INDEX scheduler_config_updated_by_idx ON scheduler_config (updated_by);

CREATE TRIGGER scheduler_config_set_updated_at BEFORE UPDATE ON scheduler_config
    FOR EACH ROW EXECUTE FUNCTION openwatch_set_updated_at();

INSERT INTO scheduler_config (id) VALUES (1);
