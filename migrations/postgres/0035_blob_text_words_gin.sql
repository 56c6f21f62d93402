-- no-transaction
-- Full-text search (issue 27): the word index (0034) over the texts in the
-- trigram index whose words are in the vocabulary: a text enters both at
-- once (the trigram indexer's batch), so a delivery pays for neither.
-- Built CONCURRENTLY: deliveries go on during an upgrade.
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_words ON blob_text
    USING gin (words) WHERE indexed AND joined AND worded;
