-- Freshness: a device with no conclusive result for `stale_after` is stale.
-- Its transitions carry the flag, so availability counts stale time as
-- unmonitored instead of up or down.
ALTER TABLE state_changes ADD COLUMN stale boolean NOT NULL DEFAULT false;
