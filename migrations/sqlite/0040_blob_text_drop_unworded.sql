-- PostgreSQL only (full-text word index, issue 27): SQLite searches with
-- its FTS5 trigram table.
SELECT 1;
