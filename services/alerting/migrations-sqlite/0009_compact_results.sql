-- Compact storage: the SQLite form of migrations/0009_compact_results.sql
-- (see src/store/packed.rs). SQLite has no partitions and these tables have
-- few rows (one raw row per ResultBatch, one rollup row per device and
-- 10-minute block or day), so each kind is one table whose old rows go in
-- short batched deletes. The earlier per-result day tables
-- (probe_results_YYYYMMDD, dropped by the store when it opens) and
-- one-minute rows go with their rows: netward had not been released.

DROP VIEW IF EXISTS probe_results;
DROP TABLE IF EXISTS probe_rollups;

CREATE TABLE probe_raw (
    probed_at    INTEGER NOT NULL,
    executor_id  TEXT NOT NULL,
    results      INTEGER NOT NULL,
    devices      BLOB NOT NULL,
    packed       BLOB NOT NULL
) STRICT;
CREATE INDEX probe_raw_probed_idx ON probe_raw (probed_at);

-- The days raw results were made ready for (what PostgreSQL's partitions
-- list): ensure_partitions adds, expire removes.
CREATE TABLE raw_days (
    day  TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;

CREATE TABLE probe_rollups_1m (
    device_id  BLOB NOT NULL,
    start      INTEGER NOT NULL,
    entries    BLOB NOT NULL,
    PRIMARY KEY (device_id, start)
) STRICT, WITHOUT ROWID;
CREATE INDEX probe_rollups_1m_start_idx ON probe_rollups_1m (start);

CREATE TABLE probe_rollups_1h (
    device_id  BLOB NOT NULL,
    start      INTEGER NOT NULL,
    entries    BLOB NOT NULL,
    PRIMARY KEY (device_id, start)
) STRICT, WITHOUT ROWID;
CREATE INDEX probe_rollups_1h_start_idx ON probe_rollups_1h (start);

CREATE TABLE rollup_marks (
    tier        TEXT PRIMARY KEY,
    done_until  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE rollup_late (
    block      INTEGER NOT NULL,
    device_id  BLOB NOT NULL,
    PRIMARY KEY (block, device_id)
) STRICT, WITHOUT ROWID;
