-- Object Lock for real (issue 9): the version id of a snapshot's manifest as the store
-- created it when the backup wrote it (S3 with versioning). Restore and verify read that
-- version, so a manifest overwritten or hidden behind a delete marker later does not
-- matter. The data objects' versions are in the manifest itself (`objects[].version`).
-- NULL for snapshots recorded before, and on stores without versions.
ALTER TABLE snapshots ADD COLUMN manifest_version TEXT;
