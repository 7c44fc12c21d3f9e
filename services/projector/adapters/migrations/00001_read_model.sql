-- +goose Up
-- The lead read model. Every table is written only by the projector's
-- fold (services/projector/lead), in the same transaction as the
-- checkpoints of the events it folds; reports read them in one snapshot.

-- leads: one row per lead. state is the whole fold, which the next event
-- builds on; the other columns are what queries filter and group by.
CREATE TABLE leads (
	lead_id         text PRIMARY KEY,
	version         bigint NOT NULL,
	status          int NOT NULL,
	owner_kind      int NOT NULL DEFAULT 0,
	owner_id        text NOT NULL DEFAULT '',
	deadline        timestamptz,
	score           int NOT NULL DEFAULT 0,
	captured_at     timestamptz,
	updated_at      timestamptz,
	source          text NOT NULL DEFAULT '',
	first_campaign  text NOT NULL DEFAULT '',
	last_campaign   text NOT NULL DEFAULT '',
	touch_count     int NOT NULL DEFAULT 0,
	country         text NOT NULL DEFAULT '',
	industry        text NOT NULL DEFAULT '',
	seniority       int NOT NULL DEFAULT 0,
	employees       int NOT NULL DEFAULT 0,
	email_domain    text NOT NULL DEFAULT '',
	segment         text NOT NULL DEFAULT '',
	account_id      text NOT NULL DEFAULT '',
	rep_id          text NOT NULL DEFAULT '',
	merged_into     text NOT NULL DEFAULT '',
	cycle           int NOT NULL DEFAULT 0,
	mql_at          timestamptz,
	assigned_at     timestamptz,
	accepted_at     timestamptz,
	opportunity_at  timestamptz,
	won_at          timestamptz,
	lost_at         timestamptz,
	recycled_at     timestamptz,
	disqualified_at timestamptz,
	attempts        int NOT NULL DEFAULT 0,
	breaches        int NOT NULL DEFAULT 0,
	-- JSON, kept as bytes: the database never looks inside, so it neither
	-- parses it on the way in nor compresses it.
	state           bytea NOT NULL
) WITH (fillfactor = 70, toast_tuple_target = 8160);
-- Room on the page and no compression: most updates of a lead change no
-- indexed column and stay on their page (HOT).
ALTER TABLE leads ALTER COLUMN state SET STORAGE EXTERNAL;
CREATE INDEX leads_captured ON leads (captured_at DESC, lead_id DESC);
CREATE INDEX leads_first_campaign ON leads (first_campaign);
CREATE INDEX leads_last_campaign ON leads (last_campaign);
CREATE INDEX leads_account ON leads (account_id);
CREATE INDEX leads_email_domain ON leads (email_domain);

-- lead_touches: how often each campaign touched a lead before its first
-- opportunity (linear attribution).
CREATE TABLE lead_touches (
	lead_id     text NOT NULL,
	campaign_id text NOT NULL,
	touches     int NOT NULL,
	PRIMARY KEY (lead_id, campaign_id)
);
CREATE INDEX lead_touches_campaign ON lead_touches (campaign_id);

-- stage_visits: each stay in a status.
CREATE TABLE stage_visits (
	lead_id    text NOT NULL,
	seq        bigint NOT NULL,
	status     int NOT NULL,
	entered_at timestamptz NOT NULL,
	left_at    timestamptz,
	PRIMARY KEY (lead_id, seq)
);
CREATE INDEX stage_visits_entered ON stage_visits (entered_at);

-- journeys: each cycle from MQL on.
CREATE TABLE journeys (
	lead_id        text NOT NULL,
	cycle          int NOT NULL,
	mql_at         timestamptz NOT NULL,
	segment        text NOT NULL DEFAULT '',
	assigned_at    timestamptz,
	accepted_at    timestamptz,
	rejected_at    timestamptz,
	reject_reason  int NOT NULL DEFAULT 0,
	opportunity_at timestamptz,
	won_at         timestamptz,
	lost_at        timestamptz,
	recycled_at    timestamptz,
	PRIMARY KEY (lead_id, cycle)
);
CREATE INDEX journeys_mql ON journeys (mql_at);

-- handoffs: each assignment to a rep.
CREATE TABLE handoffs (
	lead_id                  text NOT NULL,
	seq                      bigint NOT NULL,
	cycle                    int NOT NULL,
	rep_id                   text NOT NULL DEFAULT '',
	segment                  text NOT NULL DEFAULT '',
	assigned_at              timestamptz NOT NULL,
	accept_by                timestamptz,
	accepted_at              timestamptz,
	accepted_within_sla      boolean NOT NULL DEFAULT false,
	contact_by               timestamptz,
	first_attempt_at         timestamptz,
	first_attempt_within_sla boolean NOT NULL DEFAULT false,
	attempts                 int NOT NULL DEFAULT 0,
	ended_at                 timestamptz,
	PRIMARY KEY (lead_id, seq)
);
CREATE INDEX handoffs_assigned ON handoffs (assigned_at);

-- opportunities: each CRM opportunity (ids are unique per lead).
CREATE TABLE opportunities (
	lead_id        text NOT NULL,
	opportunity_id text NOT NULL,
	seq            bigint NOT NULL,
	cycle          int NOT NULL,
	currency       text NOT NULL DEFAULT '',
	amount_minor   bigint NOT NULL DEFAULT 0,
	stage          text NOT NULL DEFAULT '',
	rep_id         text NOT NULL DEFAULT '',
	segment        text NOT NULL DEFAULT '',
	created_at     timestamptz NOT NULL,
	expected_close timestamptz,
	won_at         timestamptz,
	won_currency   text NOT NULL DEFAULT '',
	won_minor      bigint NOT NULL DEFAULT 0,
	lost_at        timestamptz,
	loss_reason    text NOT NULL DEFAULT '',
	PRIMARY KEY (lead_id, opportunity_id)
);
CREATE INDEX opportunities_created ON opportunities (created_at);

-- breaches: each SLA breach.
CREATE TABLE breaches (
	lead_id    text NOT NULL,
	seq        bigint NOT NULL,
	sla        int NOT NULL,
	owner_kind int NOT NULL DEFAULT 0,
	owner_id   text NOT NULL DEFAULT '',
	segment    text NOT NULL DEFAULT '',
	due_at     timestamptz,
	at         timestamptz NOT NULL,
	PRIMARY KEY (lead_id, seq)
);

-- Reference data, from campaign.<id>, model.routing and model.sla-targets.
CREATE TABLE campaigns (
	campaign_id     text PRIMARY KEY,
	name            text NOT NULL DEFAULT '',
	channel         int NOT NULL DEFAULT 0,
	starts_at       timestamptz,
	ends_at         timestamptz,
	budget_currency text NOT NULL DEFAULT '',
	budget_minor    bigint NOT NULL DEFAULT 0
);
CREATE TABLE campaign_costs (
	campaign_id  text NOT NULL,
	cost_id      text NOT NULL,
	currency     text NOT NULL,
	amount_minor bigint NOT NULL,
	period_start timestamptz,
	period_end   timestamptz,
	PRIMARY KEY (campaign_id, cost_id)
);
CREATE TABLE teams (
	team_id        text PRIMARY KEY,
	name           text NOT NULL DEFAULT '',
	manager_rep_id text NOT NULL DEFAULT ''
);
CREATE TABLE reps (
	rep_id  text PRIMARY KEY,
	name    text NOT NULL DEFAULT '',
	team_id text NOT NULL DEFAULT '',
	active  boolean NOT NULL DEFAULT true
);
CREATE TABLE accounts (
	account_id   text PRIMARY KEY,
	name         text NOT NULL DEFAULT '',
	owner_rep_id text NOT NULL DEFAULT ''
);
CREATE TABLE marketing_targets (
	period                     text NOT NULL,
	segment                    text NOT NULL,
	min_mqls                   int NOT NULL DEFAULT 0,
	min_acceptance_rate_bps    int NOT NULL DEFAULT 0,
	min_mql_to_opportunity_bps int NOT NULL DEFAULT 0,
	PRIMARY KEY (period, segment)
);

-- +goose Down
DROP TABLE marketing_targets, accounts, reps, teams, campaign_costs, campaigns,
	breaches, opportunities, handoffs, journeys, stage_visits, lead_touches, leads;
