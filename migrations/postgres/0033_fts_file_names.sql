-- Full-text search (issue 27): BODY and TEXT find attachment file names
-- decoded (RFC 2231 `filename*=utf-8''%C3%A9t%C3%A9.txt`, encoded words in
-- `name="=?utf-8?q?...?="`, quoted-string escapes, 8-bit names), which
-- index texts written before hold only in their raw form. Every body
-- whose text has a `name=` or `name*` parameter (the texts are folded and
-- stored without white space, so `filename = "x"` is `filename="x"`), or
-- whose text is stored the way of old (`joined` false), is marked for
-- indexing again: the background indexer writes its text anew, and until
-- then searches take it as a candidate and decode it (answers stay
-- whole). A superset (a body with a plain file name, or with the word
-- followed by `=` in its text, is marked too): 27% of the bodies of
-- bench/fts-corpus.py, re-indexed at about 150 a second per store. Bodies
-- with an attached message (`message/`) are marked too: one sent in
-- base64 has its parts' headers, file names among them, in no text
-- written before.
--
-- Upgrading: this is one statement over every text (about 1.5 s per
-- 100,000 bodies); deliveries of a body already stored wait for it. Roll
-- the stores out with the old ones stopped first (a replica of the old
-- version still running would index the marked bodies again without
-- their names), or run `mailctl fts rebuild` once the rollout is over.
UPDATE blobs SET fts_indexed = FALSE
 WHERE fts_indexed AND id IN (
   SELECT blob_id FROM blob_text
    WHERE NOT joined OR strpos(text, 'name=') > 0 OR strpos(text, 'name*') > 0
       OR strpos(text, 'message/') > 0);
