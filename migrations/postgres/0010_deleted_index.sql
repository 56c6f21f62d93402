-- no-transaction
-- EXPUNGE (and CLOSE, and POP3's QUIT) removes the messages flagged
-- \Deleted (bit 8): this index holds only those, so finding them costs
-- what is deleted, not the whole mailbox (100,000 rows read per EXPUNGE
-- before). Built CONCURRENTLY (outside a transaction, hence the first
-- line) so that upgrading a large store does not block its writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_deleted ON messages (mailbox_id, uid) WHERE flags & 8 <> 0;
