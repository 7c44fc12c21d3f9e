-- +goose Up
-- GetQueues and its leads (queuedCond in queries.go) read the few leads a
-- queue before a rep holds; without this every dashboard refresh scanned
-- all of leads (about 150 ms at 1M leads, against a few ms with it).
-- 1 is OWNER_KIND_QUEUE, 2 and 3 are LEAD_STATUS_MQL and _ASSIGNED.
CREATE INDEX leads_queued ON leads (owner_id) WHERE owner_kind = 1 AND status IN (2, 3);

-- +goose Down
DROP INDEX leads_queued;
