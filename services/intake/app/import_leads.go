package app

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// ImportChunk is how many rows ImportLeads takes at once: with up to three
// messages a row (event, email and external id claims) one chunk fits in
// one atomic batch.
const ImportChunk = eventstore.MaxBatch / 4

// ImportRow is one row of a bulk import.
type ImportRow struct {
	Row     int64
	Capture form.Capture
}

// ImportResult is the answer for one row: a capture result, or the
// violations that refused it (nothing written for it), or another error.
type ImportResult struct {
	Row    int64
	Result CaptureResult
	Err    error
}

// ImportLeads captures up to ImportChunk rows. Rows whose identities are
// new, and distinct within the chunk, are stored in one atomic batch
// (claims and events together; keys saved before it). The rest (known
// identities, a person twice in the chunk, a batch that lost a race) go
// through CaptureLead one by one, in row order, so every row gets exactly
// CaptureLead's semantics. Results are in row order.
func (a *App) ImportLeads(ctx context.Context, rows []ImportRow, meta envelope.Meta) []ImportResult {
	out := make([]ImportResult, len(rows))
	now := a.now()
	type pending struct {
		i   int
		l   form.Lead
		ids identities
	}
	var fresh, single []pending
	taken := map[ClaimKey]bool{}
	var keys []ClaimKey
	for i, r := range rows {
		out[i].Row = r.Row
		l, v := form.CheckCapture(r.Capture, now)
		if len(v) == 0 {
			if err := a.checkCampaign(ctx, &v, "attribution.campaign_id", l.Attribution.GetCampaignId()); err != nil {
				out[i].Err = err
				continue
			}
		}
		if len(v) > 0 {
			out[i].Err = invalid(v)
			continue
		}
		p := pending{i: i, l: l, ids: a.identity(l)}
		if slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { return taken[k] }) {
			// The same person again in this chunk: after the batch it
			// finds the first row's lead and resubmits on it.
			single = append(single, p)
			continue
		}
		for _, k := range p.ids.all() {
			taken[k] = true
			keys = append(keys, k)
		}
		fresh = append(fresh, p)
	}

	held, err := a.leads.Claims(ctx, keys...)
	if err != nil {
		single, fresh = append(fresh, single...), nil
	}
	var batch []NewLead
	var dataKeys []*vault.Key
	var inBatch []pending
	for _, p := range fresh {
		if slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { _, ok := held[k]; return ok }) {
			single = append(single, p)
			continue
		}
		nl, key, err := a.newLead(p.l, p.ids, meta)
		if err != nil {
			out[p.i].Err = err
			continue
		}
		batch, dataKeys, inBatch = append(batch, nl), append(dataKeys, key), append(inBatch, p)
	}
	if len(batch) > 0 {
		err := a.keys.Save(ctx, dataKeys...)
		var versions []uint64
		if err == nil {
			versions, err = a.leads.Create(ctx, batch...)
		}
		var held *ClaimedError
		switch {
		case err == nil:
			for j, p := range inBatch {
				out[p.i].Result = CaptureResult{LeadID: batch[j].LeadID, Outcome: Created, Version: versions[j]}
			}
		case errors.As(err, &held) || errors.Is(err, eventstore.ErrConflict):
			// Someone captured one of these people since we looked:
			// nothing of the batch was stored; go row by row.
			single = append(single, inBatch...)
		default:
			for _, p := range inBatch {
				out[p.i].Err = err
			}
		}
	}
	// Row order, so a repeated person resubmits on the lead its first
	// row made.
	slices.SortFunc(single, func(x, y pending) int { return x.i - y.i })
	for _, p := range single {
		out[p.i].Result, out[p.i].Err = a.CaptureLead(ctx, rows[p.i].Capture, meta)
	}
	return out
}

// newLead is a lead's first event and identity claims, for a batch.
func (a *App) newLead(l form.Lead, ids identities, meta envelope.Meta) (NewLead, *vault.Key, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return NewLead{}, nil, err
	}
	key, err := a.keys.NewKey(id.String())
	if err != nil {
		return NewLead{}, nil, err
	}
	meta.IdempotencyKey, meta.OccurredAt = l.IdempotencyKey, l.OccurredAt
	ev, err := a.capturedEvent(key, l, meta)
	if err != nil {
		return NewLead{}, nil, err
	}
	nl := NewLead{LeadID: key.LeadID(), Event: ev}
	for _, k := range ids.all() {
		nl.Claims = append(nl.Claims, Claim{k, claimFor(key.LeadID(), k)})
	}
	return nl, key, nil
}
