-- Compact storage (see src/store/packed.rs): raw results as one row per
-- ResultBatch and 10-minute block, packed; rollups in two tiers, a row per
-- device and block (one-minute entries) or day (hourly entries), packed.
-- Every tier is partitioned and goes by dropping partitions, never by
-- DELETE. The earlier per-result tables go with their rows: netward had
-- not been released, no deployment carries them. Runs with search_path =
-- alerting.

DROP TABLE IF EXISTS probe_results;
DROP TABLE IF EXISTS probe_rollups;

-- Raw results: `devices` the 16-byte ids one after another (found with
-- position()), `results` the rest packed. Daily partitions probe_raw_YYYYMMDD.
CREATE TABLE probe_raw (
    probed_at    timestamptz NOT NULL,
    executor_id  text NOT NULL,
    results      integer NOT NULL,
    devices      bytea NOT NULL,
    packed       bytea NOT NULL
) PARTITION BY RANGE (probed_at);
-- Ids do not compress: kept out of line as they are.
ALTER TABLE probe_raw ALTER COLUMN devices SET STORAGE EXTERNAL;
-- A row per batch: the time index costs well under a byte a result and
-- finds a block's rows, or the next row after an instant, directly.
CREATE INDEX probe_raw_probed_idx ON probe_raw (probed_at);

-- One-minute rollups (default 30 days): ten entries per row. Daily
-- partitions probe_rollups_1m_YYYYMMDD.
CREATE TABLE probe_rollups_1m (
    device_id  uuid NOT NULL,
    start      timestamptz NOT NULL,
    entries    bytea NOT NULL,
    PRIMARY KEY (device_id, start)
) PARTITION BY RANGE (start);

-- Hourly rollups (default 400 days): 24 entries per row. Monthly
-- partitions probe_rollups_1h_YYYYMM.
CREATE TABLE probe_rollups_1h (
    device_id  uuid NOT NULL,
    start      timestamptz NOT NULL,
    entries    bytea NOT NULL,
    PRIMARY KEY (device_id, start)
) PARTITION BY RANGE (start);

-- How far each tier is complete: rows before `done_until` are final.
CREATE TABLE rollup_marks (
    tier        text PRIMARY KEY,
    done_until  timestamptz NOT NULL
);

-- Results stored into a block after it was rolled up: rolled again.
CREATE TABLE rollup_late (
    block      timestamptz NOT NULL,
    device_id  uuid NOT NULL,
    PRIMARY KEY (block, device_id)
);
