-- Full-text search (issue 27): BODY and TEXT find attachment file names
-- decoded (RFC 2231 `filename*=utf-8''%C3%A9t%C3%A9.txt`, encoded words in
-- `name="=?utf-8?q?...?="`, quoted-string escapes, 8-bit names), which
-- index texts written before hold only in their raw form. Every body
-- whose text has a `name=`, `name =` or `name*` parameter (the texts are
-- folded) is marked for indexing again: the background indexer writes its
-- text anew, and until then searches take it as a candidate and decode it
-- (answers stay whole). A superset (a body with a plain file name, or the
-- word "name" anywhere, is marked too: mail-parser takes any white space
-- between a parameter's name and its `=`), and bodies with an attached
-- message (`message/`: one sent in base64 has its parts' headers in no
-- text written before).
UPDATE blobs SET fts_indexed = FALSE
 WHERE fts_indexed AND id IN (
   SELECT t.blob_id FROM blob_fts f JOIN blob_text t ON t.docid = f.rowid
    WHERE blob_fts MATCH '"name" OR "message/"');
