-- QUOTA's MESSAGE resource (RFC 9208 5.2): a limit on the number of
-- messages an account holds, beside the storage limit; 0 is unlimited.
-- message_count is already kept up to date with used_bytes.
ALTER TABLE accounts ADD COLUMN quota_messages BIGINT NOT NULL DEFAULT 0;
