-- APPEND's idempotency keys (AppendHeader.idempotency_key): an APPEND
-- whose answer was lost (a store replica killed after the commit) is
-- sent again with the same key and gets the first answer instead of a
-- second copy. Written in the APPEND's own statement or transaction;
-- forgotten after an hour by the collector of unreferenced bodies.
CREATE TABLE append_keys (
    account_id   BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    uids         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX append_keys_created ON append_keys (created_at);
