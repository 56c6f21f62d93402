-- See 0019: PostgreSQL only. Kept so both backends number their
-- migrations alike.
SELECT 1;
