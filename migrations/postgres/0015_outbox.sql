-- Sieve at delivery (issue #26): what a script sends and what it must
-- remember, written in the delivery's own transaction.
--
-- `outbox`: messages to send through the relay (vacation replies,
-- redirects, bounces for a reject that could not be said in the SMTP
-- reply). smtp-ingest replicas claim due rows with a lease
-- (`SELECT ... FOR UPDATE SKIP LOCKED`), send them, and delete them; a
-- failure moves `next_attempt_at` on. `mail_from` is empty for the null
-- sender. `delivery_id` names the delivery that wrote the row (for the
-- log); the delivery id itself keeps a retried Deliver from writing it
-- twice.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT REFERENCES accounts (id) ON DELETE SET NULL,
    delivery_id     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,
    data            BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);

-- Vacation's per-sender memory (RFC 5230 4.2, RFC 6131): no second reply
-- to `sender` under `handle` before `until` (unix seconds).
CREATE TABLE sieve_vacation (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    handle     TEXT NOT NULL,
    sender     TEXT NOT NULL,
    until      BIGINT NOT NULL,
    PRIMARY KEY (account_id, handle, sender)
);

-- The duplicate test's memory (RFC 7352): ids seen under a handle, until
-- they expire.
CREATE TABLE sieve_duplicates (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    handle     TEXT NOT NULL,
    id         TEXT NOT NULL,
    until      BIGINT NOT NULL,
    PRIMARY KEY (account_id, handle, id)
);
