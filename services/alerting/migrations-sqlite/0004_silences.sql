-- Silences and maintenance windows: the SQLite form of
-- migrations/0004_silences.sql. Each is kept whole as its netward.v1 message
-- (`body`); the window's bounds sit beside it so the service can load only
-- those that can still open. DeleteSilence sets ends_at (rows stay, so
-- history can say why an alert was muted).

CREATE TABLE silences (
    id           BLOB PRIMARY KEY,
    maintenance  INTEGER NOT NULL,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER,
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    body         BLOB NOT NULL
) STRICT;
CREATE INDEX silences_ends_idx ON silences (ends_at);
