-- Inventory: hosts, host groups, SSH credentials and known host keys.

CREATE TABLE hosts (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
    -- DNS name or IP address the scanner connects to.
    address           TEXT NOT NULL CHECK (length(address) BETWEEN 1 AND 255),
    port              INTEGER NOT NULL DEFAULT 22 CHECK (port BETWEEN 1 AND 65535),
    -- os-release ID / VERSION_ID, filled in by the first scan.
    os_family         TEXT,
    os_version        TEXT,
    tags              TEXT[] NOT NULL DEFAULT '{}' CHECK (array_position(tags, NULL) IS NULL),
    -- Liveness (host-monitor). Spellings of `MonitoringState`.
    monitoring_state  TEXT NOT NULL DEFAULT 'unknown'
        CHECK (monitoring_state IN ('unknown', 'online', 'degraded', 'down', 'maintenance')),
    last_check_at     TIMESTAMPTZ,
    next_check_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Compliance (adaptive schedule). Spellings of `ComplianceState`.
    compliance_state  TEXT NOT NULL DEFAULT 'unknown'
        CHECK (compliance_state IN ('unknown', 'critical', 'low', 'partial', 'mostly_compliant', 'compliant')),
    last_score        DOUBLE PRECISION CHECK (last_score BETWEEN 0 AND 100),
    next_scan_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Consecutive failed scans; drives the exponential back-off.
    scan_failures     INTEGER NOT NULL DEFAULT 0 CHECK (scan_failures >= 0),
    -- Checks and scans are paused until then.
    maintenance_until TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Dispatchers claim due work ordered by these.
CREATE INDEX hosts_next_scan_at_idx ON hosts (next_scan_at);
CREATE INDEX hosts_next_check_at_idx ON hosts (next_check_at);
CREATE INDEX hosts_tags_idx ON hosts USING gin (tags);

CREATE TRIGGER hosts_set_updated_at BEFORE UPDATE ON hosts
    FOR EACH ROW EXECUTE FUNCTION openwatch_set_updated_at();

CREATE TABLE host_groups (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
    description TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER host_groups_set_updated_at BEFORE UPDATE ON host_groups
    FOR EACH ROW EXECUTE FUNCTION openwatch_set_updated_at();

CREATE TABLE host_group_members (
    -- CASCADE (both): a membership is only the pair; it goes with either side.
    group_id UUID NOT NULL REFERENCES host_groups (id) ON DELETE CASCADE,
    host_id  UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, host_id)
);

CREATE INDEX host_group_members_host_id_idx ON host_group_members (host_id);

-- SSH credentials, encrypted with AES-256-GCM by the application (associated data = row id).
-- Plaintext never reaches the database. Resolution order for a host: host → group → system.
CREATE TABLE credentials (
    id          UUID PRIMARY KEY,
    scope       TEXT NOT NULL CHECK (scope IN ('system', 'group', 'host')),
    -- CASCADE: a host- or group-scoped secret is useless (and a liability) once its
    -- target is gone.
    host_id     UUID REFERENCES hosts (id) ON DELETE CASCADE,
    group_id    UUID REFERENCES host_groups (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    username    TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 255),
    auth_method TEXT NOT NULL CHECK (auth_method IN ('password', 'private_key')),
    ciphertext  BYTEA NOT NULL CHECK (length(ciphertext) > 0),
    -- 96-bit GCM nonce, unique per encryption.
    nonce       BYTEA NOT NULL CHECK (length(nonce) = 12),
    -- Which key encrypted it, so keys can rotate.
    key_id      TEXT NOT NULL CHECK (length(key_id) > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (
        (scope = 'system' AND host_id IS NULL AND group_id IS NULL)
        OR (scope = 'group' AND group_id IS NOT NULL AND host_id IS NULL)
        OR (scope = 'host' AND host_id IS NOT NULL AND group_id IS NULL)
    )
);

-- At most one credential per host, per group, and one system default. The first two also
-- serve as the FK indexes (NULLs do not collide).
CREATE UNIQUE INDEX credentials_host_id_key ON credentials (host_id);
CREATE UNIQUE INDEX credentials_group_id_key ON credentials (group_id);
CREATE UNIQUE INDEX credentials_one_system_key ON credentials ((scope)) WHERE scope = 'system';

CREATE TRIGGER credentials_set_updated_at BEFORE UPDATE ON credentials
    FOR EACH ROW EXECUTE FUNCTION openwatch_set_updated_at();

-- SSH host keys: trust on first use (recorded `pending`, or `trusted` when TOFU is allowed)
-- and strict mode (only `trusted` keys are accepted).
CREATE TABLE ssh_known_hosts (
    id                 UUID PRIMARY KEY,
    -- CASCADE: a key is a fact about one host.
    host_id            UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    key_type           TEXT NOT NULL CHECK (length(key_type) > 0),
    -- `SHA256:<base64>` as printed by ssh-keygen -l.
    fingerprint_sha256 TEXT NOT NULL CHECK (fingerprint_sha256 LIKE 'SHA256:%'),
    -- Base64 public key blob, when recorded.
    public_key         TEXT,
    status             TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'trusted', 'revoked')),
    first_seen_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- SET NULL: the approval stays on record (and in the audit log) after the user goes.
    approved_by        UUID REFERENCES users (id) ON DELETE SET NULL,
    approved_at        TIMESTAMPTZ,
    revoked_at         TIMESTAMPTZ,
    UNIQUE (host_id, key_type, fingerprint_sha256)
);

-- Only one trusted key per host and key type.
CREATE UNIQUE INDEX ssh_known_hosts_one_trusted_key
    ON ssh_known_hosts (host_id, key_type) WHERE status = 'trusted';
CREATE INDEX ssh_known_hosts_approved_by_idx ON ssh_known_hosts (approved_by);
