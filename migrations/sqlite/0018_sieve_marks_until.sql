-- Vacation replies and duplicate marks are forgotten when their time runs
-- out (the body collector deletes rows whose `until` is past): an index
-- on `until` keeps that sweep from reading the whole tables.
CREATE INDEX sieve_vacation_until ON sieve_vacation (until);
CREATE INDEX sieve_duplicates_until ON sieve_duplicates (until);
