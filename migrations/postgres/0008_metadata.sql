-- METADATA (RFC 5464): server annotations per account and mailbox
-- annotations (which follow a RENAME and go with a DELETE), private and
-- shared alike; entry names are kept lower-case (they compare without
-- case).
CREATE TABLE server_metadata (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE mailbox_metadata (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);
CREATE INDEX mailbox_metadata_account ON mailbox_metadata (account_id);
