-- URLAUTH (RFC 4467): each mailbox's access key, made by the first
-- GENURLAUTH on it and dropped by RESETKEY; a URLAUTH-authorized URL
-- carries an HMAC-SHA256 of its rump under this key. A mailbox deleted
-- (or deleted and made again) loses its key, and with it its URLs.
CREATE TABLE urlauth_keys (
    mailbox_id BIGINT NOT NULL PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    access_key TEXT NOT NULL
);
CREATE INDEX urlauth_keys_account ON urlauth_keys (account_id);
