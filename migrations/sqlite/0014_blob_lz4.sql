-- PostgreSQL's 0014 chooses TOAST compression for message bodies; SQLite
-- has none to choose. Kept so both backends number their migrations alike.
SELECT 1;
