-- Retention: the indexes the hourly pruning needs to find old rows without
-- scanning a table (migrations/0008_retention.sql). Rows go in small
-- batches (see `store::Prunable`), each its own short write transaction.

-- Transitions older than `state_change_retention` (the newest of each
-- device before the cutoff is kept: it is the state at the cutoff).
CREATE INDEX state_changes_changed_idx ON state_changes (changed_at);

-- Resolved alerts past `alert_retention`.
CREATE INDEX alerts_resolved_idx ON alerts (resolved_at) WHERE state = 3;

-- Settled (delivered or given up) notifications past
-- `notification_retention`; pending rows are never pruned.
CREATE INDEX notification_outbox_settled_idx ON notification_outbox (created_at) WHERE state <> 1;
