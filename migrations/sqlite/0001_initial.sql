-- The mailbox store schema (DESIGN.md section 4). Times are unix seconds.
-- Every per-account table carries account_id so the schema can later be
-- distributed by account. blobs and deliveries are shared by design: one
-- message body is stored once however many accounts receive it.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- UIDVALIDITY values come from here: never reused, even when a mailbox is
-- deleted and re-created by name. Starting at the clock keeps them fresh if
-- a database is ever re-initialised.
INSERT INTO counters (name, value) VALUES ('uid_validity', CAST(strftime('%s','now') AS INTEGER));

CREATE TABLE domains (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id     BIGINT NOT NULL REFERENCES domains (id),
    address       TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    quota_bytes   BIGINT NOT NULL DEFAULT 0,
    used_bytes    BIGINT NOT NULL DEFAULT 0,
    message_count BIGINT NOT NULL DEFAULT 0,
    disabled      BOOLEAN NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE aliases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    TEXT NOT NULL UNIQUE
);

CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    special_use    BIGINT NOT NULL DEFAULT 0,
    uid_validity   BIGINT NOT NULL,
    uid_next       BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    -- UIDs at or above this are \Recent for the next session that claims them.
    recent_uid     BIGINT NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE blobs (
    id         TEXT PRIMARY KEY,          -- SHA-256 of data, hex
    size       BIGINT NOT NULL,
    data       BLOB NOT NULL,
    summary    BLOB NOT NULL,            -- protobuf MessageSummary
    created_at BIGINT NOT NULL
);

CREATE TABLE messages (
    account_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id    BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid           BIGINT NOT NULL,
    blob_id       TEXT NOT NULL REFERENCES blobs (id),
    flags         BIGINT NOT NULL DEFAULT 0,
    keywords      TEXT NOT NULL DEFAULT '',
    modseq        BIGINT NOT NULL,
    internal_date BIGINT NOT NULL,
    internal_tz   BIGINT NOT NULL DEFAULT 0,
    size          BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);

CREATE TABLE expunged (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);

CREATE TABLE deliveries (
    id         TEXT PRIMARY KEY,
    result     BLOB,                     -- protobuf DeliverResponse
    created_at BIGINT NOT NULL
);

CREATE TABLE pop3_leases (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    lease_id   TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,          -- SHA-256 of the token, hex
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    protocol   TEXT NOT NULL,
    client_ip  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Failed-login counters, keyed "acct:<address>" or "ip:<address>".
CREATE TABLE auth_failures (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
