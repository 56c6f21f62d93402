-- Full-text search (issue 27): the trigram index over the plain texts
-- (0020) gives way to the one over the texts without white space (0022),
-- which every search uses.
DROP INDEX IF EXISTS blob_text_trgm_indexed;
