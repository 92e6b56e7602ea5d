-- Chaos drills (issue 12). One row per `lifeboat drill run` holding its journal (the JSON of
-- `model::journal::DrillJournal`, rewritten as the drill goes); its hash-chained events,
-- append-only, one row each; and each fault's intent, written BEFORE the fault is applied,
-- with how to revert it and its TTL, so a watchdog or the next start can revert a fault
-- whose drill died. `status` of a run: running | finished | aborted.
CREATE TABLE drill_runs (
    id             TEXT PRIMARY KEY,
    scenario       TEXT NOT NULL,
    tier           TEXT NOT NULL,
    host           TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    status         TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    journal        TEXT NOT NULL,
    journal_sha256 TEXT NOT NULL
);
CREATE INDEX drill_runs_started ON drill_runs (started_at);
CREATE TABLE drill_events (
    run_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE drill_faults (
    run_id      TEXT NOT NULL,
    fault       TEXT NOT NULL,
    action      TEXT NOT NULL,
    spec        TEXT NOT NULL,        -- JSON: what was touched and how to revert it
    status      TEXT NOT NULL,        -- intent | applied | reverted
    ttl_at      TEXT NOT NULL,        -- reverted by the watchdog once past this
    applied_at  TEXT,
    reverted_at TEXT,
    reverted_by TEXT,                 -- drill | watchdog | sweep
    attempts    BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    PRIMARY KEY (run_id, fault)
);
