-- +goose Up
-- What-ifs, in the projector's own schema (not a read model's: a rebuild
-- leaves them alone). The replica running one writes its progress here
-- about every second, so any replica answers GetWhatIf, and a restart
-- forgets nothing.
CREATE TABLE what_ifs (
	id          uuid PRIMARY KEY,
	proposed    int NOT NULL,
	active      int NOT NULL,
	period_from timestamptz,
	period_to   timestamptz,
	read        bigint NOT NULL DEFAULT 0,
	total       bigint NOT NULL DEFAULT 0,
	done        boolean NOT NULL DEFAULT false,
	error       text NOT NULL DEFAULT '',
	result      jsonb,
	started_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE what_ifs;
