-- no-transaction
-- Full-text search (issue 27): the long words (0034) of the texts in the
-- word index, under a trigram index (a search string's run of letters may
-- be part of one).
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_long_words ON blob_text
    USING gin (long_words gin_trgm_ops) WHERE indexed AND joined AND worded;
