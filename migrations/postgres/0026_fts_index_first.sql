-- Full-text search (issue 27): a planner hint for the trigram index.
-- The texts live out of line (TOAST), so the planner prices a sequential
-- scan of blob_text at the few pages of its main table and, on a large
-- store (120,000 texts of bench/fts), preferred it to the trigram index:
-- `LIKE` on every text, 5 s, where the index answers in 50 ms. The
-- searches add `fts_index_first(t.blob_id)` to the index's condition: it
-- is true and does nothing, but costs the planner a million units per row
-- it is applied to, so a plan that applies it to every text (a scan)
-- always loses to one that applies it to the index's few matches.
-- plpgsql, so that it is never inlined (an inlined function loses its
-- cost).
CREATE OR REPLACE FUNCTION fts_index_first(blob_id TEXT) RETURNS BOOLEAN
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 1000000
    AS 'BEGIN RETURN TRUE; END';
