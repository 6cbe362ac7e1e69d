-- Rules (data, managed over gRPC) and alerts. A rule or an alert is kept
-- whole as its netward.v1 message (`body`), with the columns queries filter
-- on beside it.

CREATE TABLE rules (
    id       uuid PRIMARY KEY,
    name     text NOT NULL,
    kind     smallint NOT NULL,
    enabled  boolean NOT NULL,
    builtin  boolean NOT NULL,
    body     bytea NOT NULL,
    CONSTRAINT rules_name_key UNIQUE (name)
);

CREATE TABLE alerts (
    id           uuid PRIMARY KEY,
    rule_id      uuid NOT NULL,
    device_id    uuid NOT NULL,
    interface    text NOT NULL DEFAULT '',
    state        smallint NOT NULL,
    severity     smallint NOT NULL,
    started_at   timestamptz NOT NULL,
    resolved_at  timestamptz,
    body         bytea NOT NULL
);
-- One open alert per (rule, device, interface): deduplication is the
-- database's promise, not only the service's.
CREATE UNIQUE INDEX alerts_open_key ON alerts (rule_id, device_id, interface) WHERE state <> 3;
CREATE INDEX alerts_device_idx ON alerts (device_id, started_at);
CREATE INDEX alerts_started_idx ON alerts (started_at);
