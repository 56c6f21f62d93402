-- PostgreSQL's 0017 chooses TOAST compression for the full-text index's
-- texts; SQLite has none to choose (its index keeps no text). Kept so
-- both backends number their migrations alike.
SELECT 1;
