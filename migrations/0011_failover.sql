-- Failovers between sites (issue 11). One row per term: a term is moved to one site once.
-- Every step is recorded `started` before it is taken and `done` after, so a controller
-- killed mid-failover resumes at the first step not `done` (steps are idempotent).
CREATE TABLE failovers (
    term        BIGINT PRIMARY KEY,
    from_site   TEXT NOT NULL,
    to_site     TEXT NOT NULL,
    mode        TEXT NOT NULL,         -- planned | manual | automatic
    status      TEXT NOT NULL,         -- running | done | failed
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    plan        TEXT,                  -- JSON: what was decided, data at risk
    timeline    TEXT,                  -- JSON: measured milliseconds per phase
    error       TEXT
);
CREATE TABLE failover_steps (
    term        BIGINT NOT NULL,
    step        TEXT NOT NULL,         -- fence | promote | repoint | dns | verify
    status      TEXT NOT NULL,         -- started | done
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    detail      TEXT,
    PRIMARY KEY (term, step)
);
