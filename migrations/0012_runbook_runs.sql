-- Runbook runs (issue 12): one row per `lifeboat runbook run`, and one row per attempt of
-- each of its steps, written before the step starts and after it ends, so `runbook resume`
-- continues after the last finished step and `runbook log` shows who did what when.
-- `runbook_text` is the runbook as it was run (resume runs the same steps); `vars` is a JSON
-- object whose secret-looking values are stored as null (resume asks for them again).
CREATE TABLE runbook_runs (
    id            TEXT PRIMARY KEY,
    runbook       TEXT NOT NULL,
    runbook_text  TEXT NOT NULL,
    vars          TEXT NOT NULL,
    who           TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    status        TEXT NOT NULL,      -- running | complete | failed | stopped
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    error         TEXT
);
CREATE INDEX runbook_runs_started ON runbook_runs (started_at);
CREATE TABLE runbook_steps (
    run_id        TEXT NOT NULL,
    step          TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,    -- the step's position in the runbook, from 0
    who           TEXT NOT NULL,
    argv          TEXT NOT NULL,      -- JSON array, secrets scrubbed
    pid           BIGINT,
    status        TEXT NOT NULL,      -- running | done | failed | interrupted
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    exit_code     BIGINT,
    error         TEXT,
    PRIMARY KEY (run_id, step, attempt)
);
