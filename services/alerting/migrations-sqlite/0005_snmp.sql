-- SNMP: the SQLite form of migrations/0005_snmp.sql. What each poll
-- returned, per-interface rows with the rates alerting computed from
-- consecutive polls, hourly interface rollups, and the current view of every
-- device's interfaces. The raw tables are plain tables here (no
-- partitions): `expire` deletes their rows past the raw retention in short
-- batches, found through the (polled_at) indexes below.

-- One row per poll of a device: outcome, sysUpTime, and the scalar values
-- (and non-interface table cells) as JSON: [{oid, name, instance, value}].
CREATE TABLE snmp_samples (
    device_id         BLOB NOT NULL,
    polled_at         INTEGER NOT NULL,
    cycle_id          INTEGER NOT NULL,
    executor_id       TEXT NOT NULL,
    outcome           INTEGER NOT NULL,
    partial           INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    sys_uptime_ticks  INTEGER,
    requests_sent     INTEGER NOT NULL,
    profile           TEXT NOT NULL,
    error_detail      TEXT NOT NULL,
    scalar_values     TEXT NOT NULL
) STRICT;
CREATE INDEX snmp_samples_device_idx ON snmp_samples (device_id, polled_at);
CREATE INDEX snmp_samples_polled_idx ON snmp_samples (polled_at);

-- One row per interface per poll: status, the raw counters (64-bit values
-- stored bit for bit in a signed INTEGER: values above 2^63 read back
-- negative), and the rates of the interval ending at this poll (NULL where
-- there is none: the first poll, a reboot, a counter reset). Counter deltas
-- of errors and discards are kept so history can sum them exactly.
CREATE TABLE interface_samples (
    device_id          BLOB NOT NULL,
    if_index           INTEGER NOT NULL,
    polled_at          INTEGER NOT NULL,
    admin_status       INTEGER NOT NULL,
    oper_status        INTEGER NOT NULL,
    speed_bps          INTEGER,
    hc                 INTEGER NOT NULL,
    in_octets          INTEGER,
    out_octets         INTEGER,
    in_errors          INTEGER,
    out_errors         INTEGER,
    in_bps             REAL,
    out_bps            REAL,
    in_utilisation     REAL,
    out_utilisation    REAL,
    in_pps             REAL,
    out_pps            REAL,
    in_errors_ps       REAL,
    out_errors_ps      REAL,
    in_discards_ps     REAL,
    out_discards_ps    REAL,
    in_errors_delta    INTEGER,
    out_errors_delta   INTEGER,
    in_discards_delta  INTEGER,
    out_discards_delta INTEGER,
    -- netward.v1.CounterDiscontinuity of the interval (0 = none).
    discontinuity      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX interface_samples_device_idx ON interface_samples (device_id, if_index, polled_at);
CREATE INDEX interface_samples_polled_idx ON interface_samples (polled_at);

-- Hourly rollups of interface_samples (sums and peaks merge exactly).
CREATE TABLE interface_rollups (
    device_id          BLOB NOT NULL,
    if_index           INTEGER NOT NULL,
    hour               INTEGER NOT NULL,
    samples            INTEGER NOT NULL,
    oper_up            INTEGER NOT NULL,
    rate_samples       INTEGER NOT NULL,
    in_bps_sum         REAL NOT NULL,
    in_bps_max         REAL,
    out_bps_sum        REAL NOT NULL,
    out_bps_max        REAL,
    in_utilisation_max REAL,
    out_utilisation_max REAL,
    in_errors          INTEGER NOT NULL,
    out_errors         INTEGER NOT NULL,
    in_discards        INTEGER NOT NULL,
    out_discards       INTEGER NOT NULL,
    PRIMARY KEY (device_id, if_index, hour)
) STRICT, WITHOUT ROWID;
CREATE INDEX interface_rollups_hour_idx ON interface_rollups (hour);

-- The current view: one row per interface, kept whole as its
-- netward.v1.InterfaceStatus (`body`) with the last raw sample (`sample`, a
-- netward.v1.InterfaceSample) and what rate and flap arithmetic needs
-- (`memory`, JSON), so both continue exactly after a restart.
CREATE TABLE interfaces (
    device_id   BLOB NOT NULL,
    if_index    INTEGER NOT NULL,
    body        BLOB NOT NULL,
    sample      BLOB NOT NULL,
    memory      TEXT NOT NULL DEFAULT '{}',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, if_index)
) STRICT;

-- The last poll of every SNMP device (reboot detection needs its sysUpTime).
CREATE TABLE snmp_devices (
    device_id         BLOB PRIMARY KEY,
    polled_at         INTEGER NOT NULL,
    outcome           INTEGER NOT NULL,
    sys_uptime_ticks  INTEGER,
    sys_object_id     TEXT NOT NULL,
    profile           TEXT NOT NULL,
    last_reboot_at    INTEGER
) STRICT;
