-- The notification outbox: the SQLite form of
-- migrations/0003_notification_outbox.sql. Rows are written in the same
-- transaction as the alert change they announce, so a crash loses neither; a
-- delivery loop sends them afterwards and records the outcome here.

CREATE TABLE notification_outbox (
    -- AUTOINCREMENT: ids are never reused, as PostgreSQL's bigserial.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id         BLOB NOT NULL,
    -- Channel name from [alerting.notify]; its kind is kept too, so the
    -- delivery state stays readable after the configuration changes.
    channel          TEXT NOT NULL,
    channel_kind     INTEGER NOT NULL,            -- 1 webhook, 2 alertmanager (netward.v1.ChannelKind)
    event            TEXT NOT NULL CHECK (event IN ('firing', 'resolved')),
    payload          TEXT NOT NULL,               -- JSON
    state            INTEGER NOT NULL,            -- 1 pending, 2 delivered, 3 failed (gave up)
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When the row may next be tried; also the lease of an attempt in
    -- flight (moved ahead when a sender claims the row).
    next_attempt_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    last_error       TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    delivered_at     INTEGER
) STRICT;
-- What the delivery loop asks: due pending rows.
CREATE INDEX notification_outbox_due_idx ON notification_outbox (state, next_attempt_at);
-- Per (alert, channel) order (a resolve never overtakes its firing) and
-- ListNotifications by alert.
CREATE INDEX notification_outbox_alert_idx ON notification_outbox (alert_id, channel, id);
