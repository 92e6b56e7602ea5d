-- The failover controller's own state at this site (issue 11): the term and primary it
-- knows, its phase (a failover in progress is resumed from here after a crash), and its vote
-- book (at most one vote per term, kept across restarts). One row per site name; each
-- site's lifeboat has its own catalog, so normally one row.
CREATE TABLE failover_controller (
    site        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,         -- JSON: policy::failover::State
    ballot      TEXT NOT NULL,         -- JSON: policy::failover::Ballot
    updated_at  TEXT NOT NULL
);
