-- The notification outbox. Rows are written in the same transaction as the
-- alert change they announce, so a crash loses neither; a delivery loop
-- sends them afterwards and records the outcome here. Runs with
-- search_path = alerting.

CREATE TABLE notification_outbox (
    id               bigserial PRIMARY KEY,
    alert_id         uuid NOT NULL,
    -- Channel name from [alerting.notify]; its kind is kept too, so the
    -- delivery state stays readable after the configuration changes.
    channel          text NOT NULL,
    channel_kind     smallint NOT NULL,            -- 1 webhook, 2 alertmanager (netward.v1.ChannelKind)
    event            text NOT NULL CHECK (event IN ('firing', 'resolved')),
    payload          jsonb NOT NULL,
    state            smallint NOT NULL,            -- 1 pending, 2 delivered, 3 failed (gave up)
    attempts         integer NOT NULL DEFAULT 0,
    -- When the row may next be tried; also the lease of an attempt in
    -- flight (moved ahead when a sender claims the row).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
-- What the delivery loop asks: due pending rows.
CREATE INDEX notification_outbox_due_idx ON notification_outbox (state, next_attempt_at);
-- Per (alert, channel) order (a resolve never overtakes its firing) and
-- ListNotifications by alert.
CREATE INDEX notification_outbox_alert_idx ON notification_outbox (alert_id, channel, id);
