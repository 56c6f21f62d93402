-- Full-text search (issue 27): a word index beside the trigram index. The
-- trigram index is shared by every account and re-checks, with LIKE on
-- its whole stored text, every text holding a search string's trigrams
-- in any mailbox: a word in 50 of 100,000 bench/fts-corpus.py messages
-- took ~2 ms to look up and re-checked 56 texts to find the 2 of one
-- folder (8.8 ms for SEARCH BODY in one folder, against Dovecot with
-- fts-xapian's 1.5 ms). A text's words (`words`: its distinct runs of
-- letters and digits, `fts_query::index_words`) under a GIN index, and
-- their vocabulary (`fts_words`) under a trigram index, narrow exactly
-- enough to read only the searched mailbox's texts: a search string's
-- runs are looked up in the vocabulary (whole words, or words starting,
-- ending with or holding them), the texts holding those words joined to
-- the mailbox, and only those re-checked.
--
-- Runs longer than 64 characters (`long_words`, between spaces; mostly
-- encoded data such as DKIM signatures) are kept out of the vocabulary
-- and looked up under a trigram index of their own (0036).
--
-- `worded`: the text is in the word index, its words in `fts_words`. Only
-- this version sets it, in the statement that adds the words to the
-- vocabulary. `words` is NULL for texts written before (and by a replica
-- of an older version during a rolling update), and a replica of an older
-- version puts texts in the trigram index without adding their words to
-- the vocabulary: neither is `worded`. Searches read such texts one by
-- one (or go by the trigram index while there are many), and the store's
-- indexer computes them again in the background (no UPDATE over every
-- text here). Adding these columns rewrites nothing.
ALTER TABLE blob_text ADD COLUMN IF NOT EXISTS words TEXT[];
ALTER TABLE blob_text ADD COLUMN IF NOT EXISTS long_words TEXT;
ALTER TABLE blob_text ADD COLUMN IF NOT EXISTS worded BOOLEAN NOT NULL DEFAULT FALSE;

-- Every word of a text in the word index is here (the statement that
-- puts the text in the index adds its words). Never pruned: a word no
-- text holds any more finds no text.
CREATE TABLE IF NOT EXISTS fts_words (word TEXT PRIMARY KEY);
CREATE INDEX IF NOT EXISTS fts_words_trgm ON fts_words USING gin (word gin_trgm_ops);

-- Compressed as the texts are (0032), when the server has LZ4.
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE blob_text ALTER COLUMN words SET COMPRESSION lz4;
    ALTER TABLE blob_text ALTER COLUMN long_words SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR lock_not_available THEN
    RAISE NOTICE 'blob_text.words stays compressed with pglz: %', SQLERRM;
END
$$;
