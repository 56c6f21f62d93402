-- Full-text search (issue 27): BODY and TEXT find attachment file names
-- decoded (RFC 2231 `filename*=utf-8''%C3%A9t%C3%A9.txt`, encoded words in
-- `name="=?utf-8?q?...?="`), which index texts written before hold only in
-- their raw form. The bodies whose text may hold such a name (a
-- parameter name with `*`, or `name=` beside an encoded word anywhere;
-- the texts are folded) are marked for indexing again: the background
-- indexer writes their texts anew, and until then searches take them as
-- candidates and decode them (answers stay whole).
UPDATE blobs SET fts_indexed = FALSE
 WHERE fts_indexed AND id IN (
   SELECT t.blob_id FROM blob_fts f JOIN blob_text t ON t.docid = f.rowid
    WHERE blob_fts MATCH '"name*" OR ("name=" AND ("?q?" OR "?b?"))');
