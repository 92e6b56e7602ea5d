-- Copies of snapshots in other stores (other regions, DR sites). A `complete` copy has its
-- manifest in `store` and its data objects' SHA-256 checked by reading them back.
CREATE TABLE copies (
    snapshot_id  TEXT NOT NULL,
    store        TEXT NOT NULL,
    status       TEXT NOT NULL,        -- running | complete | failed
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    stored_bytes BIGINT,
    error        TEXT,
    PRIMARY KEY (snapshot_id, store)
);
