-- Reports the daemon published into a store (issue 13): one row per written object (a report
-- is written as HTML and as JSON). `sha256` is of the bytes written: `/reports` refuses to
-- serve an object whose bytes no longer match it. A row is inserted only after its object was
-- written (and locked, on an object-locked store), so a row always names a complete object.
CREATE TABLE published_reports (
    id          TEXT NOT NULL,         -- e.g. posture-20261207T060000Z, failover-term-3
    format      TEXT NOT NULL,         -- html | json
    kind        TEXT NOT NULL,         -- posture | failover | drill
    subject     TEXT,                  -- the failover term or drill id
    store       TEXT NOT NULL,
    object_key  TEXT NOT NULL,         -- relative to the store's prefix
    sha256      TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    locked_until TEXT,                 -- the object lock retention, if the store has one
    created_at  TEXT NOT NULL,
    PRIMARY KEY (id, format)
);
CREATE INDEX published_reports_created ON published_reports (created_at);
