-- Retention: the indexes the hourly pruning needs to find old rows without
-- scanning a table. Rows go in small batches (see `store::Prunable`), so
-- none of these deletes holds a lock for long. Runs with search_path =
-- alerting.

-- Transitions older than `state_change_retention` (the newest of each
-- device before the cutoff is kept: it is the state at the cutoff).
CREATE INDEX state_changes_changed_idx ON state_changes (changed_at);

-- Resolved alerts past `alert_retention`.
CREATE INDEX alerts_resolved_idx ON alerts (resolved_at) WHERE state = 3;

-- Settled (delivered or given up) notifications past
-- `notification_retention`; pending rows are never pruned.
CREATE INDEX notification_outbox_settled_idx ON notification_outbox (created_at) WHERE state <> 1;
