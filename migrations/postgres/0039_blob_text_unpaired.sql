-- no-transaction
-- Full-text search (issue 27): the texts out of the word index now that
-- it holds word pairs (0038): 0037's, and those whose words lack their
-- pairs. A search through the word index reads these of its mailbox one
-- by one, and the indexer finds those the trigram indexer leaves here.
-- 0037's index stays for replicas of the version before during a rolling
-- update.
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_unpaired ON blob_text (blob_id)
    WHERE NOT (indexed AND joined AND worded AND paired);
