-- SORT's FROM / TO / CC and SORT=DISPLAY's DISPLAYFROM / DISPLAYTO keys
-- are now read as ENVELOPE reads the address header (the first header of
-- its name, a leading group's name, quoted local parts; RFC 5256 3, RFC
-- 5957 3). Keys stored before are forgotten: the store computes them again
-- from the body the first time a SORT or THREAD needs them (as for bodies
-- stored before 0002), and keeps them.
UPDATE blobs SET sort_keys = NULL WHERE sort_keys IS NOT NULL;
