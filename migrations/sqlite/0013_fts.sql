-- Full-text search (issue 27): the text SEARCH BODY, TEXT and HEADER
-- match in a body (decoded text parts, raw body without base64 bodies,
-- header fields; mail_summary::search_text::index_text), case folded,
-- in an FTS5 trigram index: a search string narrows the candidates with
-- a phrase MATCH and the evaluator decides among them.
--
-- The index keeps no copy of the text (contentless); blob_text maps its
-- rowids to bodies. Both are written with the body (the delivery's or
-- APPEND's transaction) and deleted with it. Bodies stored before this
-- migration are indexed by the store in the background: until a body's
-- fts_indexed is set, every search takes it as a candidate, so answers
-- are never incomplete. The partial index is that work list.
CREATE TABLE blob_text (
    docid   INTEGER PRIMARY KEY,
    blob_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE blob_fts USING fts5(
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram case_sensitive 1'
);
CREATE TRIGGER blobs_fts_delete AFTER DELETE ON blobs BEGIN
    DELETE FROM blob_fts WHERE rowid IN (SELECT docid FROM blob_text WHERE blob_id = old.id);
    DELETE FROM blob_text WHERE blob_id = old.id;
END;

ALTER TABLE blobs ADD COLUMN fts_indexed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_fts_pending ON blobs (id) WHERE NOT fts_indexed;
