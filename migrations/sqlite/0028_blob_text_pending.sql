-- See the PostgreSQL migration of this number: PostgreSQL only (SQLite
-- searches its FTS5 trigram table). Kept so both backends number their
-- migrations alike.
SELECT 1;
