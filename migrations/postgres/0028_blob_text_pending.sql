-- no-transaction
-- Full-text search (issue 27): the texts not in the trigram index of 0029
-- (not indexed yet, or stored with white space by an older version:
-- 0027), for the trigram indexer and for the searches that read them one
-- by one. Replaces `blob_text_unindexed` (0019; 0030 drops it).
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_pending ON blob_text (blob_id)
    WHERE NOT (indexed AND joined);
