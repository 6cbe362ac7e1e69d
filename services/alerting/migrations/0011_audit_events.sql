-- The audit trail: one row per accepted change (who, what, when), written
-- by the service right after the change succeeded; newest first by id.
-- `at_us` is microseconds since the epoch (the same in both backends).
-- Kept until an operator deletes rows (docs/audit.md).

CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    at_us        bigint NOT NULL,
    actor        text NOT NULL,
    actor_role   text NOT NULL,
    service      text NOT NULL,
    action       text NOT NULL,
    object_kind  text NOT NULL,
    object_id    text NOT NULL,
    detail       text NOT NULL
);
CREATE INDEX audit_events_at_idx ON audit_events (at_us);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_object_idx ON audit_events (object_id, id);
