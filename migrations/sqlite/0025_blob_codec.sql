-- Message bodies compressed by the store (PostgreSQL's 0025): `data_codec`
-- says how `data` is kept, 0 the raw bytes (every body stored before this
-- migration), 1 an LZ4 block whose original size is `size`.
ALTER TABLE blobs ADD COLUMN data_codec INTEGER NOT NULL DEFAULT 0;
