-- Sieve scripts (RFC 5228) per account, managed over ManageSieve
-- (RFC 5804) and run at delivery. At most one script of an account is
-- active: the partial unique index keeps it so whatever the callers do.
-- `version` comes from the 'sieve_version' counter and is new on every
-- write of the row (content, activation, name), so a replica holding a
-- compiled script knows it stale by comparing one number. `size` is the
-- content's length in octets (the per-account limits count it).
CREATE TABLE sieve_scripts (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    content    TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0,
    size       BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (account_id) WHERE active;
INSERT INTO counters (name, value) VALUES ('sieve_version', 0);
