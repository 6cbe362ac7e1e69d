-- SNMP in the storage budget: the SQLite form of
-- migrations/0010_compact_snmp.sql (see src/store/packed_snmp.rs). One
-- packed row per device and poll replaces snmp_samples and
-- interface_samples; hourly interface rollups are a packed row per device
-- and UTC day, computed off the ingest path, instead of a row per
-- interface and hour merged on every poll. SQLite has no partitions: old
-- rows go in short batched deletes, as probe_raw's. The old tables go with
-- their rows: netward had not been released.

DROP TABLE IF EXISTS interface_samples;
DROP TABLE IF EXISTS snmp_samples;
DROP TABLE IF EXISTS interface_rollups;

-- Rows are ~0.5-1.5 KB: a rowid table (a WITHOUT ROWID one would spill
-- them to overflow pages), the key as a unique index.
CREATE TABLE snmp_raw (
    device_id   BLOB NOT NULL,
    polled_at   INTEGER NOT NULL,
    poll        BLOB NOT NULL,
    interfaces  BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX snmp_raw_device_idx ON snmp_raw (device_id, polled_at);
CREATE INDEX snmp_raw_polled_idx ON snmp_raw (polled_at);

CREATE TABLE interface_rollups_1h (
    device_id  BLOB NOT NULL,
    start      INTEGER NOT NULL,
    entries    BLOB NOT NULL,
    PRIMARY KEY (device_id, start)
) STRICT;
CREATE INDEX interface_rollups_1h_start_idx ON interface_rollups_1h (start);

CREATE TABLE interface_rollup_late (
    day        INTEGER NOT NULL,
    device_id  BLOB NOT NULL,
    PRIMARY KEY (day, device_id)
) STRICT, WITHOUT ROWID;

ALTER TABLE snmp_devices ADD COLUMN error_detail TEXT NOT NULL DEFAULT '';
