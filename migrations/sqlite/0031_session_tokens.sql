-- Session tokens are signed and checked in memory (DESIGN.md 8, issue
-- #24): a login, the calls of its session and its logout write nothing.
-- A token carries its account's session generation, which a new password
-- or a disabling moves on (ending every session of the account, on every
-- replica); the key that signs tokens is kept in store_secrets
-- ("session-token-key", made by the first store that starts).
ALTER TABLE accounts ADD COLUMN session_gen BIGINT NOT NULL DEFAULT 0;
-- `sessions` now holds only the renewals of sessions that outlive half
-- their first lifetime (their expiry slid forward). Sessions opened before
-- this migration are not signed tokens and are refused from now on: their
-- clients log in again.
DELETE FROM sessions;
