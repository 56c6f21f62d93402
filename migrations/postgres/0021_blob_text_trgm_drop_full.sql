-- Full-text search (issue 27): the trigram index over every text (0013)
-- gives way to the partial one (0020), which every search uses (its
-- statements say `indexed`).
DROP INDEX IF EXISTS blob_text_trgm;
