-- Freshness: a device with no conclusive result for `stale_after` is stale.
-- Its transitions carry the flag, so availability counts stale time as
-- unmonitored instead of up or down. (migrations/0007_stale.sql)
ALTER TABLE state_changes ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
