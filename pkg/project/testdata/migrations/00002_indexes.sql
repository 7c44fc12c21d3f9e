-- +goose Up
-- An index of each kind a folded rebuild drops and builds again, on a
-- table its fold loads and on one it does not.
CREATE INDEX tally_last_seq ON tally (last_seq DESC);
ALTER TABLE tally ADD CONSTRAINT tally_subject_last_seq UNIQUE (subject, last_seq);
CREATE TABLE untouched (
	id text PRIMARY KEY,
	n  int
);
CREATE INDEX untouched_n ON untouched (n) WHERE n > 0;

-- +goose Down
DROP TABLE untouched;
DROP INDEX tally_last_seq;
ALTER TABLE tally DROP CONSTRAINT tally_subject_last_seq;
