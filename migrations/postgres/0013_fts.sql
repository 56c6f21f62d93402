-- Full-text search (issue 27): the text SEARCH BODY, TEXT and HEADER
-- match in a body (decoded text parts, raw body without base64 bodies,
-- header fields; mail_summary::search_text::index_text), case folded,
-- under a trigram index: a search string narrows the candidates with
-- LIKE and the evaluator decides among them.
--
-- One row per body, written with it (the delivery's statement or group
-- commit, APPEND's statement), deleted with it. Bodies stored before
-- this migration are indexed by the store in the background: until a
-- body's fts_indexed is true, every search takes it as a candidate, so
-- answers are never incomplete. The partial index is that work list
-- (empty once everything is indexed), shared by every store replica.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE blob_text (
    blob_id TEXT PRIMARY KEY REFERENCES blobs (id) ON DELETE CASCADE,
    text    TEXT NOT NULL
);
CREATE INDEX blob_text_trgm ON blob_text USING gin (text gin_trgm_ops);

ALTER TABLE blobs ADD COLUMN fts_indexed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX blobs_fts_pending ON blobs (id) WHERE NOT fts_indexed;
