-- Full-text search (issue 27): the index's texts compressed with lz4
-- instead of pglz (as 0014 did for bodies). A search decompresses each
-- text the trigram index leaves to re-check it, and each text of a small
-- mailbox; on a scratch database of 100,000 texts of 16 KB, reading
-- 10,000 of them took 0.2 s with lz4 against 0.5-1.2 s with pglz, for 17%
-- more bytes. Texts written before stay pglz until `mailctl fts rebuild`
-- writes them again; both read alike. Where lz4 is not built in, nothing
-- changes.
DO $$
BEGIN
    ALTER TABLE blob_text ALTER COLUMN text SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'blob_text.text stays pglz-compressed: %', SQLERRM;
END
$$;
