-- Full-text search (issue 27): 0022's trigram index over the expression
-- and 0019's index of the texts not indexed yet give way to 0029's and
-- 0028's (every search and the trigram indexer use those now).
DROP INDEX IF EXISTS blob_text_trgm_joined;
DROP INDEX IF EXISTS blob_text_unindexed;
