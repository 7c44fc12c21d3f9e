-- +goose Up
-- When a cost line was recorded (its event's occurred_at): a line without
-- period_start counts in the period it was recorded in, instead of in no
-- dated report. Lines projected before this are NULL until a rebuild.
ALTER TABLE campaign_costs ADD COLUMN recorded_at timestamptz;

-- +goose Down
ALTER TABLE campaign_costs DROP COLUMN recorded_at;
