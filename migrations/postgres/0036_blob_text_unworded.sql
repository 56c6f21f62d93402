-- no-transaction
-- Full-text search (issue 27): the texts out of the word index (0035):
-- waiting for the trigram indexer, or without their words (0034). A search
-- through the word index reads these of its mailbox one by one, and the
-- indexer finds those without their words here.
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_unworded ON blob_text (blob_id)
    WHERE NOT (indexed AND joined AND words IS NOT NULL);
