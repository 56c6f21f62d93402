-- EXPUNGE (and CLOSE, and POP3's QUIT) removes the messages flagged
-- \Deleted (bit 8): this index holds only those, so finding them costs
-- what is deleted, not the whole mailbox (100,000 rows read per EXPUNGE
-- before).
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE flags & 8 <> 0;
