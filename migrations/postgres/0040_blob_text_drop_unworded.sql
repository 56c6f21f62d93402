-- no-transaction
-- Full-text search (issue 27): 0037's partial index of the texts out of
-- the word index went unused with word pairs (0039's holds those texts
-- now: every query says `paired` too); it stayed for the replicas of the
-- version before 0038 during that rolling update. Every delivery and
-- every indexer batch still wrote it.
DROP INDEX CONCURRENTLY IF EXISTS blob_text_unworded;
