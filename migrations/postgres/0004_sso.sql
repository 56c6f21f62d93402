-- Logins beyond PLAIN (issue #14).
-- SCRAM-SHA-256 keys (RFC 5802 3, RFC 7677): made from the password when
-- it is set, or at the next PLAIN/LOGIN with it for older accounts. Hex;
-- NULL until then. The password itself is still kept only as argon2.
ALTER TABLE accounts ADD COLUMN scram_salt TEXT;
ALTER TABLE accounts ADD COLUMN scram_iterations BIGINT;
ALTER TABLE accounts ADD COLUMN scram_stored_key TEXT;
ALTER TABLE accounts ADD COLUMN scram_server_key TEXT;

-- The OpenID Connect issuer whose JWTs log in a domain's mailboxes
-- (OAUTHBEARER / XOAUTH2). Keyed by the domain's name.
CREATE TABLE domain_oidc (
    domain        TEXT PRIMARY KEY,
    issuer        TEXT NOT NULL,
    audience      TEXT NOT NULL,
    jwks_url      TEXT NOT NULL,
    mailbox_claim TEXT NOT NULL
);

-- Secrets every store replica shares, made once by the first one to need
-- them (the key of SCRAM's fake salts for unknown users).
CREATE TABLE store_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
