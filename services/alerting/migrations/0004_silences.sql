-- Silences and maintenance windows. Each is kept whole as its netward.v1
-- message (`body`); the window's bounds sit beside it so the service can
-- load only those that can still open. DeleteSilence sets ends_at (rows
-- stay, so history can say why an alert was muted).

CREATE TABLE silences (
    id           uuid PRIMARY KEY,
    maintenance  boolean NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    body         bytea NOT NULL
);
CREATE INDEX silences_ends_idx ON silences (ends_at);
