-- SNMP: what each poll returned, per-interface rows with the rates alerting
-- computed from consecutive polls, hourly interface rollups, and the current
-- view of every device's interfaces. Raw tables are daily partitions created
-- and dropped with probe_results' (same retention); rollups live as long as
-- probe rollups. Runs with search_path = alerting.

-- One row per poll of a device: outcome, sysUpTime, and the scalar values
-- (and non-interface table cells) as JSON: [{oid, name, instance, value}].
CREATE TABLE snmp_samples (
    device_id         uuid NOT NULL,
    polled_at         timestamptz NOT NULL,
    cycle_id          bigint NOT NULL,
    executor_id       text NOT NULL,
    outcome           smallint NOT NULL,
    partial           boolean NOT NULL,
    duration_ms       integer NOT NULL,
    sys_uptime_ticks  bigint,
    requests_sent     integer NOT NULL,
    profile           text NOT NULL,
    error_detail      text NOT NULL,
    scalar_values     jsonb NOT NULL
) PARTITION BY RANGE (polled_at);
CREATE INDEX snmp_samples_device_idx ON snmp_samples (device_id, polled_at);

-- One row per interface per poll: status, the raw counters (64-bit values
-- stored bit for bit in bigint: values above 2^63 read back negative), and
-- the rates of the interval ending at this poll (NULL where there is none:
-- the first poll, a reboot, a counter reset). Counter deltas of errors and
-- discards are kept so history can sum them exactly.
CREATE TABLE interface_samples (
    device_id          uuid NOT NULL,
    if_index           integer NOT NULL,
    polled_at          timestamptz NOT NULL,
    admin_status       smallint NOT NULL,
    oper_status        smallint NOT NULL,
    speed_bps          bigint,
    hc                 boolean NOT NULL,
    in_octets          bigint,
    out_octets         bigint,
    in_errors          bigint,
    out_errors         bigint,
    in_bps             double precision,
    out_bps            double precision,
    in_utilisation     double precision,
    out_utilisation    double precision,
    in_pps             double precision,
    out_pps            double precision,
    in_errors_ps       double precision,
    out_errors_ps      double precision,
    in_discards_ps     double precision,
    out_discards_ps    double precision,
    in_errors_delta    bigint,
    out_errors_delta   bigint,
    in_discards_delta  bigint,
    out_discards_delta bigint,
    -- netward.v1.CounterDiscontinuity of the interval (0 = none).
    discontinuity      smallint NOT NULL DEFAULT 0
) PARTITION BY RANGE (polled_at);
CREATE INDEX interface_samples_device_idx ON interface_samples (device_id, if_index, polled_at);

-- Hourly rollups of interface_samples (sums and peaks merge exactly).
CREATE TABLE interface_rollups (
    device_id          uuid NOT NULL,
    if_index           integer NOT NULL,
    hour               timestamptz NOT NULL,
    samples            integer NOT NULL,
    oper_up            integer NOT NULL,
    rate_samples       integer NOT NULL,
    in_bps_sum         double precision NOT NULL,
    in_bps_max         double precision,
    out_bps_sum        double precision NOT NULL,
    out_bps_max        double precision,
    in_utilisation_max double precision,
    out_utilisation_max double precision,
    in_errors          bigint NOT NULL,
    out_errors         bigint NOT NULL,
    in_discards        bigint NOT NULL,
    out_discards       bigint NOT NULL,
    PRIMARY KEY (device_id, if_index, hour)
);
CREATE INDEX interface_rollups_hour_idx ON interface_rollups (hour);

-- The current view: one row per interface, kept whole as its
-- netward.v1.InterfaceStatus (`body`) with the last raw sample (`sample`, a
-- netward.v1.InterfaceSample) and what rate and flap arithmetic needs
-- (`memory`), so both continue exactly after a restart.
CREATE TABLE interfaces (
    device_id   uuid NOT NULL,
    if_index    integer NOT NULL,
    body        bytea NOT NULL,
    sample      bytea NOT NULL,
    memory      jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, if_index)
);

-- The last poll of every SNMP device (reboot detection needs its sysUpTime).
CREATE TABLE snmp_devices (
    device_id         uuid PRIMARY KEY,
    polled_at         timestamptz NOT NULL,
    outcome           smallint NOT NULL,
    sys_uptime_ticks  bigint,
    sys_object_id     text NOT NULL,
    profile           text NOT NULL,
    last_reboot_at    timestamptz
);
