-- See the PostgreSQL migration of this number: PostgreSQL only (SQLite
-- keeps no index text to re-check: its FTS5 trigram table is
-- contentless). Kept so both backends number their migrations alike.
SELECT 1;
