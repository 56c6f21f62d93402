-- no-transaction
-- Full-text search (issue 27): the trigram index over the texts marked
-- `indexed` only (0019), so that writing a text does not maintain it.
-- Built CONCURRENTLY (outside a transaction, hence the first line) so
-- that upgrading a large store does not block deliveries while the index
-- is built; the full one (0013) serves searches meanwhile and is dropped
-- by 0021.
CREATE INDEX CONCURRENTLY IF NOT EXISTS blob_text_trgm_indexed ON blob_text USING gin (text gin_trgm_ops) WHERE indexed;
