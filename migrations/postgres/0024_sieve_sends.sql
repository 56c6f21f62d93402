-- Sieve's outgoing messages per account and hour (issue #26): a script
-- queues at most the store's `sieve_max_sends_per_hour` of them
-- (redirects, vacation replies, bounces of a reject); over it a redirect
-- or a bounce becomes a copy in INBOX and a vacation reply is not sent.
-- One row per account: `hour` (unix seconds / 3600) and how many were
-- queued in it; a new hour starts the count again.
CREATE TABLE sieve_sends (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    hour       BIGINT NOT NULL,
    sent       BIGINT NOT NULL
);
