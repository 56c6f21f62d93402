-- no-transaction
-- Full-text search (issue 27): the trigram index over the texts without
-- their white space (space, line feed, carriage return, tab), which the
-- searches look up with LIKE on the same expression and the search
-- string without the same characters (crate::fts_query::joined_sql).
-- pg_trgm takes trigrams within words only, so on the plain text a phrase
-- of common words narrowed no better than its rarest word: on 10,000
-- messages of bench/fts-corpus.py, "project status meeting" (50 matches)
-- left 191 candidates; joined, "projectstatusmeeting" has trigrams across
-- the words and leaves 53. Removing characters loses no match (the string
-- without them occurs in the text without them), and the evaluator
-- decides among the candidates as before. The index is about a third
-- larger (32 MB against 22 MB for those 10,000 texts).
--
-- Partial like 0020's, which it replaces (0023 drops that one); built
-- CONCURRENTLY, outside a transaction, so that upgrading a large store
-- does not block deliveries (replicas not upgraded yet search with 0020's
-- index until 0023 drops it).
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_trgm_joined ON blob_text USING gin (
    (replace(replace(replace(replace(text, ' ', ''), E'\n', ''), E'\r', ''), E'\t', ''))
    gin_trgm_ops
) WHERE indexed;
