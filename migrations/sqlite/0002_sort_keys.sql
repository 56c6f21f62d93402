-- SORT and THREAD (RFC 5256) keys of a body (protobuf SortKeys), computed
-- at delivery. NULL for bodies stored before this column existed: the
-- store computes them from the body the first time a SORT or THREAD
-- needs them, and keeps them.
ALTER TABLE blobs ADD COLUMN sort_keys BLOB;
