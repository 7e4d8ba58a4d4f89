DROP TABLE artifact_tokens;
ALTER TABLE artifacts DROP CONSTRAINT artifacts_fork_version_fk;
DROP TABLE artifact_versions;
DROP TABLE artifact_snapshots;
DROP TABLE artifacts;
