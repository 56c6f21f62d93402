-- SAVEDATE (RFC 8514): when a message was saved into its mailbox
-- (delivered, appended, copied or moved there), Unix seconds. NULL for
-- messages saved before this column existed: FETCH SAVEDATE says NIL.
ALTER TABLE messages ADD COLUMN save_date BIGINT;
