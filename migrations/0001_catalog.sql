-- The catalog of runs and snapshots. Portable SQL: the same file runs on SQLite (the
-- embedded default) and PostgreSQL. Timestamps are RFC 3339 UTC text with milliseconds, so
-- they sort as text.

-- One row per attempt at work (a backup today; copies, verifications and prunes later).
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    job          TEXT NOT NULL,        -- backup
    source       TEXT NOT NULL,
    snapshot_id  TEXT,
    store        TEXT,
    status       TEXT NOT NULL,        -- running | complete | failed
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    heartbeat_at TEXT NOT NULL,        -- refreshed while running; stale => the process died
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    error        TEXT
);
CREATE INDEX runs_status ON runs (status);

-- One row per snapshot, from its first byte: running, then complete (manifest written) or
-- failed. A complete row always has a manifest in its store.
CREATE TABLE snapshots (
    id               TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    store            TEXT NOT NULL,
    status           TEXT NOT NULL,    -- running | complete | failed
    created_at       TEXT NOT NULL,
    finished_at      TEXT,
    raw_bytes        BIGINT,
    compressed_bytes BIGINT,
    stored_bytes     BIGINT,
    sha256           TEXT,
    duration_ms      BIGINT,
    manifest         TEXT,             -- the manifest JSON, as written to the store
    error            TEXT
);
CREATE INDEX snapshots_source_created ON snapshots (source, created_at);
