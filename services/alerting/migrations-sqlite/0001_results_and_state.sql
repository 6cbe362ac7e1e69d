-- Results storage and device state: the SQLite form of
-- migrations/0001_results_and_state.sql, same tables and columns. UUIDs are
-- 16-byte BLOBs, instants INTEGER Unix microseconds (UTC), JSON TEXT,
-- booleans INTEGER 0/1. Tables are STRICT: a value of the wrong type (a TEXT
-- timestamp, say) is refused instead of stored.

-- Raw probe results live in one table per UTC day, `probe_results_YYYYMMDD`
-- (the PostgreSQL partitions' names), made ahead of time by
-- `ensure_partitions` and dropped past the retention by `expire`; this view
-- is their union, rebuilt whenever a day is added or dropped. Each day is a
-- WITHOUT ROWID table keyed (device_id, probed_at, seq): rows are clustered
-- by device, so no secondary index is needed (`seq` tells apart results of
-- one device stamped with the same microsecond). Measured with 1,000,000
-- results of 10,000 devices, one a minute: one rowid table with indexes on
-- (device_id, probed_at) and (probed_at) took ~126 bytes a result on disk,
-- a rowid table per day with the device index ~107, this WITHOUT ROWID day
-- table ~78-85 (PostgreSQL's partitions ~170). And a day goes in short
-- batched deletes then a DROP, never one long DELETE through an index on
-- probed_at. (`examples/store_bench.rs` measures both backends.)
CREATE VIEW probe_results AS
SELECT
    CAST(NULL AS BLOB)    AS device_id,
    CAST(NULL AS INTEGER) AS probed_at,
    CAST(NULL AS INTEGER) AS cycle_id,
    CAST(NULL AS TEXT)    AS batch_id,
    CAST(NULL AS TEXT)    AS executor_id,
    CAST(NULL AS INTEGER) AS sent,
    CAST(NULL AS INTEGER) AS received,
    CAST(NULL AS REAL)    AS loss_percent,
    CAST(NULL AS INTEGER) AS rtt_min_us,
    CAST(NULL AS INTEGER) AS rtt_avg_us,
    CAST(NULL AS INTEGER) AS rtt_max_us,
    CAST(NULL AS INTEGER) AS rtt_stddev_us,
    CAST(NULL AS INTEGER) AS outcome,
    CAST(NULL AS INTEGER) AS retries_sent
WHERE 0;

-- Every stored ResultBatch, by its idempotency key: a replay finds its key
-- here and stores nothing twice. Pruned with the raw results.
CREATE TABLE ingested_batches (
    batch_uid    TEXT PRIMARY KEY,
    executor_id  TEXT NOT NULL,
    results      INTEGER NOT NULL,
    received_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;
CREATE INDEX ingested_batches_received_idx ON ingested_batches (received_at);

-- One-minute rollups: what history queries read. RTT sums let later writes
-- of the same minute merge exactly. Clustered by device (history reads one
-- device's range).
CREATE TABLE probe_rollups (
    device_id        BLOB NOT NULL,
    minute           INTEGER NOT NULL,
    probes           INTEGER NOT NULL,
    packets_sent     INTEGER NOT NULL,
    packets_received INTEGER NOT NULL,
    rtt_samples      INTEGER NOT NULL,
    rtt_sum_us       INTEGER NOT NULL,
    rtt_min_us       INTEGER,
    rtt_max_us       INTEGER,
    PRIMARY KEY (device_id, minute)
) STRICT, WITHOUT ROWID;
CREATE INDEX probe_rollups_minute_idx ON probe_rollups (minute);

-- The current state of every device alerting has heard of.
CREATE TABLE device_state (
    device_id             BLOB PRIMARY KEY,
    state                 INTEGER NOT NULL,
    since                 INTEGER NOT NULL,
    reason                TEXT NOT NULL DEFAULT '',
    maintenance           INTEGER NOT NULL DEFAULT 0,
    last_probe_at         INTEGER,
    last_outcome          INTEGER NOT NULL DEFAULT 0,
    last_loss_percent     REAL,
    last_rtt_avg_us       INTEGER,
    last_cycle_id         INTEGER NOT NULL DEFAULT 0,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    -- The state machine's memory (counters, recent transitions), so state is
    -- rebuilt exactly at start.
    memory                TEXT NOT NULL DEFAULT '{}'
) STRICT;

-- Every transition, with its reason: availability, downtime and MTTR reports
-- are computed from these rows. AUTOINCREMENT: ids are never reused, as
-- PostgreSQL's bigserial.
CREATE TABLE state_changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    BLOB NOT NULL,
    from_state   INTEGER NOT NULL,
    to_state     INTEGER NOT NULL,
    maintenance  INTEGER NOT NULL DEFAULT 0,
    reason       TEXT NOT NULL,
    changed_at   INTEGER NOT NULL,
    cycle_id     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX state_changes_device_idx ON state_changes (device_id, changed_at);
