-- SNMP in the storage budget (see src/store/packed_snmp.rs): one packed row
-- per device and poll instead of a row per poll (snmp_samples, its scalar
-- values as JSON) and a row per interface and poll (interface_samples);
-- hourly interface rollups as a packed row per device and UTC day, computed
-- off the ingest path by rollup::Roller and dropped by the month, instead
-- of a row per interface and hour merged on every poll and pruned by
-- DELETE. The old tables go with their rows: netward had not been
-- released, no deployment carries them. Runs with search_path = alerting.

DROP TABLE IF EXISTS interface_samples;
DROP TABLE IF EXISTS snmp_samples;
DROP TABLE IF EXISTS interface_rollups;

-- Raw polls: `poll` the outcome, timing and scalar values, `interfaces`
-- every interface's status and rates, both packed. Daily partitions
-- snmp_raw_YYYYMMDD, made and dropped with probe_raw's. The key finds a
-- device's polls and makes a second copy of a poll (same device and
-- instant) store nothing.
CREATE TABLE snmp_raw (
    device_id   uuid NOT NULL,
    polled_at   timestamptz NOT NULL,
    poll        bytea NOT NULL,
    interfaces  bytea NOT NULL,
    PRIMARY KEY (device_id, polled_at)
) PARTITION BY RANGE (polled_at);

-- Hourly interface rollups (default 400 days): a row per device and UTC
-- day, each interface's 24 hours in `entries`. Monthly partitions
-- interface_rollups_1h_YYYYMM; progress in rollup_marks
-- ('interface_rollups_1h').
CREATE TABLE interface_rollups_1h (
    device_id  uuid NOT NULL,
    start      timestamptz NOT NULL,
    entries    bytea NOT NULL,
    PRIMARY KEY (device_id, start)
) PARTITION BY RANGE (start);
-- A row is 10-20 KB, so it goes to TOAST: pglz does not reach its 25 %
-- on varints and stores them as they are, lz4 takes ~12 % off. Where the
-- server has no lz4, pglz it is.
DO $$
BEGIN
    ALTER TABLE interface_rollups_1h ALTER COLUMN entries SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

-- Polls stored more than a minute after their day closed: the day may be
-- rolled up already, so it is rolled again for the device.
CREATE TABLE interface_rollup_late (
    day        timestamptz NOT NULL,
    device_id  uuid NOT NULL,
    PRIMARY KEY (day, device_id)
);

-- The last poll's error detail (read from snmp_samples before).
ALTER TABLE snmp_devices ADD COLUMN error_detail text NOT NULL DEFAULT '';
