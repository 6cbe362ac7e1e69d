-- The inventory on SQLite, for the embedded default: the same tables and
-- constraints as migrations/0001_inventory.sql (PostgreSQL). UUIDs are
-- 16-byte BLOBs, instants INTEGER Unix microseconds UTC (set by the store,
-- never a default), JSON maps TEXT, booleans INTEGER 0/1. STRICT tables, so a
-- value of the wrong type is refused instead of stored.
--
-- SQLite reports a violated UNIQUE constraint by its columns and a foreign
-- key by nothing at all; the store translates both to the constraint names
-- below (the PostgreSQL ones), which the service maps to its errors.

CREATE TABLE sites (
    id          BLOB NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    code        TEXT NOT NULL DEFAULT '',
    region      TEXT NOT NULL DEFAULT '',
    address     TEXT NOT NULL DEFAULT '',
    latitude    REAL,
    longitude   REAL,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT sites_name_key UNIQUE (name)
) STRICT;
CREATE UNIQUE INDEX sites_code_key ON sites (code) WHERE code <> '';
CREATE INDEX sites_region_idx ON sites (region);

-- Secrets are XChaCha20-Poly1305 ciphertexts (nonce || ciphertext), never
-- plain text; NULL = not set.
CREATE TABLE credentials (
    id             BLOB NOT NULL PRIMARY KEY,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    community      BLOB,
    username       TEXT NOT NULL DEFAULT '',
    auth_protocol  INTEGER NOT NULL,
    auth_key       BLOB,
    priv_protocol  INTEGER NOT NULL,
    priv_key       BLOB,
    context_name   TEXT NOT NULL DEFAULT '',
    description    TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    CONSTRAINT credentials_name_key UNIQUE (name)
) STRICT;

CREATE TABLE devices (
    id                 BLOB NOT NULL PRIMARY KEY,
    name               TEXT NOT NULL,
    ip_address         TEXT NOT NULL,
    site_id            BLOB NOT NULL CONSTRAINT devices_site_fkey REFERENCES sites (id),
    device_type        INTEGER NOT NULL,
    vendor             TEXT NOT NULL DEFAULT '',
    model              TEXT NOT NULL DEFAULT '',
    tags               TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(tags)),
    enabled            INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- Deferred, so an import can insert a parent and its children in any order.
    parent_id          BLOB CONSTRAINT devices_parent_fkey REFERENCES devices (id)
                       DEFERRABLE INITIALLY DEFERRED,
    snmp_enabled       INTEGER NOT NULL DEFAULT 0 CHECK (snmp_enabled IN (0, 1)),
    snmp_version       INTEGER NOT NULL DEFAULT 0,
    snmp_port          INTEGER NOT NULL DEFAULT 0,
    snmp_credential_id BLOB CONSTRAINT devices_credential_fkey REFERENCES credentials (id),
    snmp_profile       TEXT NOT NULL DEFAULT '',
    has_snmp           INTEGER NOT NULL DEFAULT 0 CHECK (has_snmp IN (0, 1)),
    probe_count        INTEGER,
    probe_timeout_ms   INTEGER,
    probe_interval_ms  INTEGER,
    probe_retries      INTEGER,
    executor_selector  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(executor_selector)),
    description        TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    revision           INTEGER NOT NULL,
    CONSTRAINT devices_name_key UNIQUE (name)
) STRICT;
-- Two enabled devices never share an address (a disabled one may, e.g. a
-- replaced box kept for its history).
CREATE UNIQUE INDEX devices_ip_address_key ON devices (ip_address) WHERE enabled;
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_parent_idx ON devices (parent_id);
CREATE INDEX devices_credential_idx ON devices (snmp_credential_id);

CREATE TABLE interface_overrides (
    device_id   BLOB NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    if_index    INTEGER NOT NULL,
    if_name     TEXT NOT NULL,
    role        INTEGER NOT NULL DEFAULT 0,
    isp_name    TEXT NOT NULL DEFAULT '',
    monitored   INTEGER CHECK (monitored IN (0, 1)),
    comment     TEXT NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, if_index, if_name)
) STRICT;

-- Every write runs in a BEGIN IMMEDIATE transaction, and SQLite has one
-- writer at a time, so the order of revisions is the order of commits: a
-- watcher that has read up to revision N can never later see a smaller one
-- appear.
CREATE TABLE revision_counter (
    singleton       INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    current         INTEGER NOT NULL,
    -- Changes at or below this revision have been pruned from device_changes.
    pruned_through  INTEGER NOT NULL
) STRICT;
INSERT INTO revision_counter VALUES (1, 0, 0);

-- One row per device change: the device as it was after the change (for a
-- deletion, as it was before), encoded as a netward.v1.Device message.
CREATE TABLE device_changes (
    revision     INTEGER NOT NULL PRIMARY KEY,
    device_id    BLOB NOT NULL,
    kind         INTEGER NOT NULL,
    device       BLOB NOT NULL,
    changed_at   INTEGER NOT NULL,
    traceparent  TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX device_changes_changed_at_idx ON device_changes (changed_at);
