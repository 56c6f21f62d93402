-- Full-text search (issue 27): HTML parts are searched as text
-- (mail_summary::html_text: tags removed, character references decoded),
-- so a text indexed before may lack what the evaluator now finds in it
-- (`café` for `caf&eacute;`): every body that mentions HTML at all is
-- marked for the background indexer, and searches read it as a candidate
-- until then (answers stay whole).
UPDATE blobs SET fts_indexed = FALSE
 WHERE fts_indexed AND position('html' IN lower(encode(data, 'escape'))) > 0;
