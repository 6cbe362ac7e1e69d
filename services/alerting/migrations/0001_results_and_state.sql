-- Results storage and device state. Runs with search_path = alerting.

-- Raw probe results, one row per probe, in daily partitions that the service
-- creates ahead of time and drops past the retention (default 7 days).
CREATE TABLE probe_results (
    device_id      uuid NOT NULL,
    probed_at      timestamptz NOT NULL,
    cycle_id       bigint NOT NULL,
    batch_id       text NOT NULL,
    executor_id    text NOT NULL,
    sent           smallint NOT NULL,
    received       smallint NOT NULL,
    loss_percent   real NOT NULL,
    rtt_min_us     integer,
    rtt_avg_us     integer,
    rtt_max_us     integer,
    rtt_stddev_us  integer,
    outcome        smallint NOT NULL,
    retries_sent   smallint NOT NULL
) PARTITION BY RANGE (probed_at);
CREATE INDEX probe_results_device_idx ON probe_results (device_id, probed_at);

-- Every stored ResultBatch, by its idempotency key: a replay finds its key
-- here and stores nothing twice. Pruned with the raw results.
CREATE TABLE ingested_batches (
    batch_uid    text PRIMARY KEY,
    executor_id  text NOT NULL,
    results      integer NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingested_batches_received_idx ON ingested_batches (received_at);

-- One-minute rollups (kept 400 days by default): what history queries read.
-- RTT sums let later writes of the same minute merge exactly.
CREATE TABLE probe_rollups (
    device_id        uuid NOT NULL,
    minute           timestamptz NOT NULL,
    probes           integer NOT NULL,
    packets_sent     bigint NOT NULL,
    packets_received bigint NOT NULL,
    rtt_samples      integer NOT NULL,
    rtt_sum_us       bigint NOT NULL,
    rtt_min_us       integer,
    rtt_max_us       integer,
    PRIMARY KEY (device_id, minute)
);
CREATE INDEX probe_rollups_minute_idx ON probe_rollups (minute);

-- The current state of every device alerting has heard of.
CREATE TABLE device_state (
    device_id             uuid PRIMARY KEY,
    state                 smallint NOT NULL,
    since                 timestamptz NOT NULL,
    reason                text NOT NULL DEFAULT '',
    maintenance           boolean NOT NULL DEFAULT false,
    last_probe_at         timestamptz,
    last_outcome          smallint NOT NULL DEFAULT 0,
    last_loss_percent     real,
    last_rtt_avg_us       integer,
    last_cycle_id         bigint NOT NULL DEFAULT 0,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    consecutive_successes integer NOT NULL DEFAULT 0,
    -- The state machine's memory (counters, recent transitions), so state is
    -- rebuilt exactly at start.
    memory                jsonb NOT NULL DEFAULT '{}'
);

-- Every transition, with its reason: availability, downtime and MTTR reports
-- are computed from these rows.
CREATE TABLE state_changes (
    id           bigserial PRIMARY KEY,
    device_id    uuid NOT NULL,
    from_state   smallint NOT NULL,
    to_state     smallint NOT NULL,
    maintenance  boolean NOT NULL DEFAULT false,
    reason       text NOT NULL,
    changed_at   timestamptz NOT NULL,
    cycle_id     bigint NOT NULL DEFAULT 0
);
CREATE INDEX state_changes_device_idx ON state_changes (device_id, changed_at);
