-- no-transaction
-- Full-text search (issue 27): the texts out of the word index (0035):
-- waiting for the trigram indexer, written without their words, or put in
-- the trigram index by an older version (0034). A search through the word
-- index reads these of its mailbox one by one, and the indexer finds
-- those the trigram indexer leaves here.
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_unworded ON blob_text (blob_id)
    WHERE NOT (indexed AND joined AND worded);
