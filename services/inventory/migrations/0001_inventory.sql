-- The inventory: sites, SNMP credentials, devices, interface overrides, and
-- the change log that WatchDevices streams. Runs with search_path = inventory.

CREATE TABLE sites (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    code        text NOT NULL DEFAULT '',
    region      text NOT NULL DEFAULT '',
    address     text NOT NULL DEFAULT '',
    latitude    double precision,
    longitude   double precision,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sites_name_key UNIQUE (name)
);
CREATE UNIQUE INDEX sites_code_key ON sites (code) WHERE code <> '';
CREATE INDEX sites_region_idx ON sites (region);

-- Secrets are XChaCha20-Poly1305 ciphertexts (nonce || ciphertext), never
-- plain text; NULL = not set.
CREATE TABLE credentials (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    version        smallint NOT NULL,
    community      bytea,
    username       text NOT NULL DEFAULT '',
    auth_protocol  smallint NOT NULL,
    auth_key       bytea,
    priv_protocol  smallint NOT NULL,
    priv_key       bytea,
    context_name   text NOT NULL DEFAULT '',
    description    text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credentials_name_key UNIQUE (name)
);

CREATE TABLE devices (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    ip_address         text NOT NULL,
    site_id            uuid NOT NULL CONSTRAINT devices_site_fkey REFERENCES sites (id),
    device_type        smallint NOT NULL,
    vendor             text NOT NULL DEFAULT '',
    model              text NOT NULL DEFAULT '',
    tags               jsonb NOT NULL DEFAULT '{}',
    enabled            boolean NOT NULL DEFAULT true,
    -- Deferred, so an import can insert a parent and its children in any order.
    parent_id          uuid CONSTRAINT devices_parent_fkey REFERENCES devices (id)
                       DEFERRABLE INITIALLY DEFERRED,
    snmp_enabled       boolean NOT NULL DEFAULT false,
    snmp_version       smallint NOT NULL DEFAULT 0,
    snmp_port          integer NOT NULL DEFAULT 0,
    snmp_credential_id uuid CONSTRAINT devices_credential_fkey REFERENCES credentials (id),
    snmp_profile       text NOT NULL DEFAULT '',
    has_snmp           boolean NOT NULL DEFAULT false,
    probe_count        integer,
    probe_timeout_ms   integer,
    probe_interval_ms  integer,
    probe_retries      integer,
    executor_selector  jsonb NOT NULL DEFAULT '{}',
    description        text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    revision           bigint NOT NULL,
    CONSTRAINT devices_name_key UNIQUE (name)
);
-- Two enabled devices never share an address (a disabled one may, e.g. a
-- replaced box kept for its history).
CREATE UNIQUE INDEX devices_ip_address_key ON devices (ip_address) WHERE enabled;
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_parent_idx ON devices (parent_id);
CREATE INDEX devices_credential_idx ON devices (snmp_credential_id);

CREATE TABLE interface_overrides (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    if_index    integer NOT NULL,
    if_name     text NOT NULL,
    role        smallint NOT NULL DEFAULT 0,
    isp_name    text NOT NULL DEFAULT '',
    monitored   boolean,
    comment     text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, if_index, if_name)
);

-- Revisions are handed out under a transaction-level advisory lock, so the
-- order of revisions is the order of commits: a watcher that has read up to
-- revision N can never later see a smaller one appear.
CREATE TABLE revision_counter (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    current         bigint NOT NULL,
    -- Changes at or below this revision have been pruned from device_changes.
    pruned_through  bigint NOT NULL
);
INSERT INTO revision_counter VALUES (true, 0, 0);

-- One row per device change: the device as it was after the change (for a
-- deletion, as it was before), encoded as a netward.v1.Device message.
CREATE TABLE device_changes (
    revision     bigint PRIMARY KEY,
    device_id    uuid NOT NULL,
    kind         smallint NOT NULL,
    device       bytea NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    traceparent  text NOT NULL DEFAULT ''
);
CREATE INDEX device_changes_changed_at_idx ON device_changes (changed_at);
