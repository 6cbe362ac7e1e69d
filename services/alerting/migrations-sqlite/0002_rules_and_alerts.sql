-- Rules (data, managed over gRPC) and alerts: the SQLite form of
-- migrations/0002_rules_and_alerts.sql. A rule or an alert is kept whole as
-- its netward.v1 message (`body`), with the columns queries filter on beside
-- it.

CREATE TABLE rules (
    id       BLOB PRIMARY KEY,
    name     TEXT NOT NULL,
    kind     INTEGER NOT NULL,
    enabled  INTEGER NOT NULL,
    builtin  INTEGER NOT NULL,
    body     BLOB NOT NULL,
    CONSTRAINT rules_name_key UNIQUE (name)
) STRICT;

CREATE TABLE alerts (
    id           BLOB PRIMARY KEY,
    rule_id      BLOB NOT NULL,
    device_id    BLOB NOT NULL,
    interface    TEXT NOT NULL DEFAULT '',
    state        INTEGER NOT NULL,
    severity     INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    resolved_at  INTEGER,
    body         BLOB NOT NULL
) STRICT;
-- One open alert per (rule, device, interface): deduplication is the
-- database's promise, not only the service's.
CREATE UNIQUE INDEX alerts_open_key ON alerts (rule_id, device_id, interface) WHERE state <> 3;
CREATE INDEX alerts_device_idx ON alerts (device_id, started_at);
CREATE INDEX alerts_started_idx ON alerts (started_at);
