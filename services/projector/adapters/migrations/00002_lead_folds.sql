-- +goose Up
-- A lead's fold (a kilobyte or more of JSON) moves out of leads: the
-- reports scan leads, and the fold made each row five times wider than
-- what they read. Folds are read and written by lead id only.
CREATE TABLE lead_folds (
	lead_id text PRIMARY KEY,
	state   bytea NOT NULL
) WITH (fillfactor = 70, toast_tuple_target = 8160);
ALTER TABLE lead_folds ALTER COLUMN state SET STORAGE EXTERNAL;
INSERT INTO lead_folds (lead_id, state) SELECT lead_id, state FROM leads;
ALTER TABLE leads DROP COLUMN state;

-- +goose Down
ALTER TABLE leads ADD COLUMN state bytea;
UPDATE leads l SET state = f.state FROM lead_folds f WHERE f.lead_id = l.lead_id;
ALTER TABLE leads ALTER COLUMN state SET NOT NULL;
DROP TABLE lead_folds;
