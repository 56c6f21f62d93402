-- no-transaction
-- Full-text search (issue 27): the trigram index over the texts as stored
-- (without white space, 0027), so that re-checking a candidate is LIKE on
-- the stored text, not the four replace() of 0022's expression. Holds the
-- texts indexed and joined; 0030 drops 0022's index. Built CONCURRENTLY:
-- deliveries go on during an upgrade (empty at first on an existing
-- store: the trigram indexer fills it in the background, and searches
-- read the texts not in it meanwhile, so answers stay whole).
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_trgm_stored ON blob_text
    USING gin (text gin_trgm_ops) WHERE indexed AND joined;
