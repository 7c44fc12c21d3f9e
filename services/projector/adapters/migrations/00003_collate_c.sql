-- +goose Up
-- Ids, campaigns and names compare byte by byte: under the database's
-- default collation (even C.UTF-8) PostgreSQL sorts text through the C
-- library, which made a rebuild's index builds about a third slower
-- (docs/operations.md). For UTF-8 text the order is the same as C.UTF-8's.
-- +goose StatementBegin
DO $$
DECLARE c record;
BEGIN
	FOR c IN SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'text' AND table_name = ANY (ARRAY['leads', 'lead_folds',
			'lead_touches', 'stage_visits', 'journeys', 'handoffs', 'opportunities', 'breaches', 'campaigns',
			'campaign_costs', 'teams', 'reps', 'accounts', 'marketing_targets'])
	LOOP
		EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"', c.table_name, c.column_name);
	END LOOP;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE c record;
BEGIN
	FOR c IN SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'text' AND collation_name = 'C' AND table_name = ANY (ARRAY['leads',
			'lead_folds', 'lead_touches', 'stage_visits', 'journeys', 'handoffs', 'opportunities', 'breaches', 'campaigns',
			'campaign_costs', 'teams', 'reps', 'accounts', 'marketing_targets'])
	LOOP
		EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "default"', c.table_name, c.column_name);
	END LOOP;
END $$;
-- +goose StatementEnd
