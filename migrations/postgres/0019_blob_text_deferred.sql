-- Full-text search (issue 27), the trigram index kept off the delivery
-- path. Maintaining the pg_trgm GIN cost about 0.55 ms of PostgreSQL CPU
-- per message of 5 KB (3,000 inserts: 42 ms into blob_text without it,
-- 1,668 ms with it), a quarter of a whole delivery's CPU on the bench
-- machine (issue 24). A delivery now writes its body's text (searchable
-- at once) with `indexed` false: the row goes to the heap, the primary
-- key and `blob_text_unindexed` only. The store's background indexer
-- sets `indexed` in batches, which puts the text in the trigram index
-- (partial, WHERE indexed; 0020) without rewriting it. A search reads
-- the texts not indexed yet of the mailbox it searches by LIKE (this
-- index finds them), the others through the trigram index.
--
-- Every text there before this migration is in the trigram index: the
-- column is added with TRUE for them (no table rewrite), then its default
-- becomes FALSE for the texts written from now on.
ALTER TABLE blob_text ADD COLUMN indexed BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE blob_text ALTER COLUMN indexed SET DEFAULT FALSE;
CREATE INDEX blob_text_unindexed ON blob_text (blob_id) WHERE NOT indexed;
