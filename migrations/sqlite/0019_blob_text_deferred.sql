-- PostgreSQL's 0019-0021 take the trigram index's upkeep off the delivery
-- path (texts marked `indexed` later, in batches). SQLite's FTS5 table
-- keeps no text of its own (contentless), so a deferred entry would need
-- the text stored a second time; its index stays written with the body.
-- Kept so both backends number their migrations alike.
SELECT 1;
