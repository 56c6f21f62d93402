-- Full-text search (issue 27): index texts compressed with LZ4 rather than
-- pglz (PostgreSQL 14 and later, when built with LZ4, as Debian's and the
-- official images are). Every candidate the trigram index returns is
-- re-checked with LIKE on its stored text, which is decompressed first;
-- the index is shared by every account, so a search re-checks every
-- matching text in the database, not only its mailbox's. Measured on
-- 100,000 bench/fts-corpus.py messages: the 109 texts (5.9 MB) a
-- three-word phrase's trigrams select took 12.7 ms to decompress with
-- pglz and 3.5 ms with LZ4, the re-check 15.3 ms against 6.3 ms (best of
-- 30), and LZ4 keeps them a little smaller (3.2 MB against 3.5 MB).
--
-- Only the column's method changes (no rewrite, no long lock): texts
-- written from now on are compressed with LZ4, those written before keep
-- pglz (read as before) until `mailctl fts rebuild` writes them again. A
-- server without LZ4 keeps pglz. The change takes the table's exclusive
-- lock for a moment; it waits for it at most 5 s (behind a long search or
-- an indexer batch, deliveries would queue behind the wait), and if it
-- cannot have it the column keeps pglz (LZ4 is only faster).
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE blob_text ALTER COLUMN text SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR lock_not_available THEN
    RAISE NOTICE 'blob_text.text stays compressed with pglz: %', SQLERRM;
END
$$;
