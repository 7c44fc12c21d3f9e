-- +goose Up
-- tally counts the events applied per subject: any double count or skip shows.
CREATE TABLE tally (
	subject  text PRIMARY KEY,
	events   int NOT NULL,
	last_seq bigint NOT NULL,
	seqs     bigint[] NOT NULL
);

-- +goose Down
DROP TABLE tally;
