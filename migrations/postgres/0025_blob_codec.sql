-- Message bodies compressed by the store (issue #24): `data_codec` says
-- how `data` is kept, 0 the raw bytes (every body stored before this
-- migration), 1 an LZ4 block whose original size is `size`. The store
-- compresses once when a body arrives, so PostgreSQL keeps and sends the
-- compressed bytes (a POP3 RETR or FETCH no longer makes the server
-- decompress a body and push it whole through TLS), and the store
-- decompresses after receiving.
-- Both changes are catalog-only, no rewrite: a column with a constant
-- default (PostgreSQL 11 and later) and a storage mode that applies to
-- values stored from now on. EXTERNAL keeps large values out of line
-- without PostgreSQL's own compression (no compressing twice); bodies
-- stored before keep their pglz or lz4 TOAST compression and read as
-- codec 0, as they are.
ALTER TABLE blobs ADD COLUMN data_codec SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
