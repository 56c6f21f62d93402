-- Full-text search (issue 27): a text's words (0034) are followed by its
-- word pairs (`fts_query::index_words`: each run of letters and digits
-- next to the one after it, both of three characters or more, the end of
-- the first and the start of the second hashed to one of 65,536 keys),
-- under the same GIN index, so that a phrase reads only the
-- texts where its words stand next to each other: "project status
-- meeting" is in 1,799 of bench/fts's 120,000 texts as three words, 73
-- hold its words and its pairs' keys, 50 the phrase (in one folder 14
-- ms before, 2.1 with the pairs; fts-xapian 3.5).
--
-- `paired`: the text's words hold its pairs. Only this version sets it,
-- whenever it writes words; texts written before (and by a replica of an
-- older version during a rolling update) have words without pairs, so a
-- phrase would miss them: until the store's indexer computes them again
-- they are out of the word index as texts without words are (read one by
-- one, or the search goes by the trigram index while there are many).
-- Adding the column rewrites nothing.
ALTER TABLE blob_text ADD COLUMN IF NOT EXISTS paired BOOLEAN NOT NULL DEFAULT FALSE;

-- An older version rewriting a text's words (its indexer's
-- `ON CONFLICT DO UPDATE SET words = ...` during a rolling update, or
-- after `mailctl fts rebuild`) does not know `paired`: its words, without
-- pairs, would keep the flag and a phrase would miss the text. This
-- version's words always end with the entry '|' (`fts_query::PAIRED`);
-- words written without it clear the flag, whoever writes them.
CREATE OR REPLACE FUNCTION blob_text_words_paired() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.paired AND (NEW.words IS NULL OR NOT NEW.words @> ARRAY[CAST('|' AS TEXT)]) THEN
        NEW.paired := FALSE;
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS blob_text_words_paired ON blob_text;
CREATE TRIGGER blob_text_words_paired BEFORE INSERT OR UPDATE OF words, paired ON blob_text
    FOR EACH ROW EXECUTE FUNCTION blob_text_words_paired();
