-- Verifications: a snapshot restored into a scratch sandbox and checked. A snapshot is
-- *verified* once it has a `passed` verification. `restore_ms` is the measured restore
-- duration: the RTO evidence.
CREATE TABLE verifications (
    id          TEXT PRIMARY KEY,
    snapshot_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    sandbox     TEXT NOT NULL,         -- local | kubernetes
    status      TEXT NOT NULL,         -- running | passed | failed
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    restore_ms  BIGINT,
    checks      TEXT,                  -- JSON array of {name, passed, detail}
    error       TEXT
);
CREATE INDEX verifications_source ON verifications (source, started_at);
