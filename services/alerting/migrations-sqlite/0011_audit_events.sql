-- The audit trail: one row per accepted change (who, what, when), written
-- by the service right after the change succeeded; newest first by id.
-- `at_us` is microseconds since the epoch (the same in both backends).
-- Kept until an operator deletes rows (docs/audit.md).

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    service      TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_kind  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX audit_events_at_idx ON audit_events (at_us);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_object_idx ON audit_events (object_id, id);
