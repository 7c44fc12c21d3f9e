package app

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/services/intake/form"
)

// ImportChunk is how many rows ImportLeads takes at once: enough to keep
// the connection busy with the rows' writes in flight together.
const ImportChunk = 1000

// importWorkers bounds how many people's rows go through CaptureLead at
// once.
const importWorkers = 128

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

// ImportLeads captures up to ImportChunk rows. Rows of new people
// (no identity held or ever claimed, distinct within the chunk, no
// idempotency key) are written together, each as CaptureLead would write
// it (its first event under the id derived from its email, its data key
// beside it, then its external id claim), all sent at once rather than one
// after the other. The rest (known people, a person twice in the chunk,
// keyed rows, a new person someone else captured meanwhile) go through
// CaptureLead: rows of one person in row order, different people side by
// side. So every row gets exactly CaptureLead's semantics. Results are in
// row order.
func (a *App) ImportLeads(ctx context.Context, rows []ImportRow, meta envelope.Meta) []ImportResult {
	out := make([]ImportResult, len(rows))
	now := a.now()
	type pending struct {
		i    int
		l    form.Lead
		ids  identities
		held map[ClaimKey]Holder // the chunk's look-up, if the row had one
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
		repeat := slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { return taken[k] })
		for _, k := range p.ids.all() {
			taken[k] = true
		}
		if l.IdempotencyKey != "" || repeat {
			// A keyed row needs its record looked up; the same person
			// again in this chunk finds the first row's lead and resubmits
			// on it.
			single = append(single, p)
			continue
		}
		keys = append(keys, p.ids.all()...)
		fresh = append(fresh, p)
	}

	held, err := a.leads.Holders(ctx, keys...)
	if err != nil {
		single, fresh = append(fresh, single...), nil
	}
	var (
		news    []NewLead
		created []pending
	)
	for _, p := range fresh {
		if slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { return held[k] != (Holder{}) }) {
			p.held = map[ClaimKey]Holder{}
			for _, k := range p.ids.all() {
				p.held[k] = held[k]
			}
			single = append(single, p)
			continue
		}
		nl, err := a.newLead(ctx, p.l, p.ids, meta)
		if err != nil {
			out[p.i].Err = err
			continue
		}
		news, created = append(news, nl), append(created, p)
	}
	if len(news) > 0 {
		versions, errs := a.leads.CreateEach(ctx, news)
		var wg sync.WaitGroup
		sem := make(chan struct{}, importWorkers)
		for j, p := range created {
			switch {
			case errs[j] == nil:
				out[p.i].Result = CaptureResult{LeadID: news[j].LeadID, Outcome: Created, Version: versions[j]}
				a.known.add(p.ids.email.Token)
				if p.ids.ext.Token == "" {
					continue
				}
				// The external id, claimed after the lead exists, as
				// CaptureLead does.
				then := a.claimRest(news[j].LeadID, news[j].LeadID, p.ids, held, meta)
				ev := news[j].Event
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					if err := then(ctx, ev); err != nil && ctx.Err() == nil {
						a.log.WarnContext(ctx, "follow-up writes failed; the next capture retries them", "lead", ev.GetLeadId(), "err", err)
					}
				})
			case errors.Is(errs[j], eventstore.ErrConflict):
				// Captured by someone else since we looked.
				single = append(single, p)
			default:
				out[p.i].Err = errs[j]
			}
		}
		wg.Wait()
	}

	// Rows of one person (sharing an identity) in row order, so that a
	// repeated person resubmits on the lead its first row made; people
	// side by side.
	slices.SortFunc(single, func(x, y pending) int { return x.i - y.i })
	group := map[ClaimKey]int{}
	var groups [][]pending
	for _, p := range single {
		g := -1
		for _, k := range p.ids.all() {
			if x, ok := group[k]; ok {
				g = x
				break
			}
		}
		if g < 0 {
			g = len(groups)
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], p)
		for _, k := range p.ids.all() {
			if _, ok := group[k]; !ok {
				group[k] = g
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, importWorkers)
	for _, g := range groups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, p := range g {
				out[p.i].Result, out[p.i].Err = a.capture(ctx, p.l, p.ids, meta, p.held)
			}
		})
	}
	wg.Wait()
	return out
}

// newLead is a new person's first event, under the id derived from their
// email, sealed with a new key.
func (a *App) newLead(ctx context.Context, l form.Lead, ids identities, meta envelope.Meta) (NewLead, error) {
	key, err := a.keys.Take(ctx, ids.email.Token)
	if err != nil {
		return NewLead{}, err
	}
	meta.IdempotencyKey, meta.OccurredAt = l.IdempotencyKey, l.OccurredAt
	ev, err := a.capturedEvent(key, l, meta)
	if err != nil {
		return NewLead{}, err
	}
	return NewLead{LeadID: key.LeadID(), Event: ev}, nil
}
