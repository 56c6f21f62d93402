-- Full-text search (issue 27): HTML parts are searched as text
-- (mail_summary::html_text: tags removed, character references decoded),
-- so a text indexed before may lack what the evaluator now finds in it:
-- every body that mentions HTML at all is marked for the background
-- indexer, and searches read it as a candidate until then.
UPDATE blobs SET fts_indexed = 0
 WHERE fts_indexed AND instr(lower(CAST(data AS TEXT)), 'html') > 0;
