package app

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
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
	Row int64
	// Keyed: the row has an idempotency key, or an external id and its
	// time, so it may be sent again whatever its outcome.
	Keyed  bool
	Result CaptureResult
	Err    error
}

// rowMeta is meta with the actor the row names, if any, as CaptureLead
// takes the one its request names.
func rowMeta(meta envelope.Meta, l form.Lead) envelope.Meta {
	meta.Actor = meta.ActorOr(l.Actor)
	return meta
}

// pending is a checked row of an import.
type pending struct {
	i    int
	l    form.Lead
	ids  identities
	held map[ClaimKey]Holder // the chunk's look-up, if the row had one
	// leads are the leads its identities were held by at the look-up (and
	// the one it was planned on): rows sharing one are written in order.
	leads []string
	// failed: it failed before or in the chunk's write, not for its own
	// fault; it is linked with the rows after it only to hold them back.
	failed bool
}

// sentRow is a row whose one write went with the chunk's others.
type sentRow struct {
	pending
	outcome Outcome
	then    func(context.Context, *eventv1.Event) error
}

// ImportLeads captures up to ImportChunk rows. Rows of people distinct
// within the chunk, without an idempotency key or external id, are
// decided from one look-up of the chunk's identities and written
// together, each as CaptureLead would write it (a new person's first
// event under the id derived from their email; a known person's
// LeadResubmitted at the version looked up), all sent at once rather than
// one after the other. The rest (a person twice in the chunk, keyed rows
// and rows with an external id, a row whose lead changed since the
// look-up, anything but a plain creation or resubmission) go through
// CaptureLead: linked rows in row order, the others side by side. So
// every row gets exactly CaptureLead's semantics. Results are in row
// order.
func (a *App) ImportLeads(ctx context.Context, rows []ImportRow, meta envelope.Meta) []ImportResult {
	return a.PrepareImport(ctx, rows, meta, nil).Write(ctx)
}

// ImportBatch is a chunk of an import, checked, looked up and decided,
// not yet written.
type ImportBatch struct {
	a      *App
	meta   envelope.Meta
	out    []ImportResult
	writes []LeadWrite
	sent   []sentRow
	single []pending
	// taken are the identities the chunk's rows bring.
	taken map[ClaimKey]bool
	// survivors finds where a row's holders land.
	survivors survivorsOf
	// blind: the chunk's look-up failed, so its rows go one at a time.
	blind bool
}

// PrepareImport checks up to ImportChunk rows, looks their identities up
// and decides each fresh row's write, without writing the rows (deciding
// on a person an erased lead still holds finishes that erasure's releases
// first, as CaptureLead does). It may run while
// before, the chunk ahead of this one, is written: a row that brings an
// identity of that chunk goes through CaptureLead after it, and a decision
// that other writes made stale fails its write's expectation and goes
// through CaptureLead too, so rows keep their semantics and order.
func (a *App) PrepareImport(ctx context.Context, rows []ImportRow, meta envelope.Meta, before *ImportBatch) *ImportBatch {
	out := make([]ImportResult, len(rows))
	now := a.now()
	var rowsOK, single, failed []pending
	whole := map[int]bool{} // rows that go the whole way through CaptureLead
	taken := map[ClaimKey]bool{}
	var keys []ClaimKey
	for i, r := range rows {
		out[i].Row, out[i].Keyed = r.Row, r.Capture.IdempotencyKey != "" || r.Capture.ExternalID.GetId() != "" && !r.Capture.OccurredAt.IsZero()
		l, v := form.CheckCapture(r.Capture, now)
		if len(v) == 0 {
			if err := a.checkCampaign(ctx, &v, "attribution.campaign_id", l.Attribution.GetCampaignId()); err != nil {
				// Not the row's fault: linked with its person's later
				// rows (whole, as repeats), so they are held back.
				out[i].Err = err
				p := pending{i: i, l: l, ids: a.identity(l), failed: true}
				for _, k := range p.ids.all() {
					taken[k] = true
				}
				keys = append(keys, p.ids.all()...) // its leads link it too
				failed = append(failed, p)
				continue
			}
		}
		if len(v) > 0 {
			out[i].Err = invalid(v)
			continue
		}
		p := pending{i: i, l: l, ids: a.identity(l)}
		repeat := slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { return taken[k] || before != nil && before.taken[k] })
		for _, k := range p.ids.all() {
			taken[k] = true
		}
		// A keyed row (an external id keys it too) needs its record looked
		// up; the same person again in this chunk or the one before finds
		// the first row's lead and resubmits on it.
		whole[i] = l.IdempotencyKey != "" || l.ExternalID.GetId() != "" || repeat
		keys = append(keys, p.ids.all()...)
		rowsOK = append(rowsOK, p)
	}

	held, err := a.leads.Holders(ctx, keys...)
	blind := err != nil
	if blind {
		held = nil
		for _, p := range rowsOK {
			whole[p.i] = true
		}
	}
	// Each fresh row is one write: a new person's first event, or a known
	// one's LeadResubmitted decided from the look-up's head. The chunk's
	// writes go before its rows that go the whole way, so a row on a lead
	// an earlier row of those holds goes that way too, after it (behind).
	var (
		writes []LeadWrite
		sent   []sentRow
		behind = map[string]bool{}
		// wholeHolders are the leads holding the identities of the rows
		// that go the whole way, in order; the first resolved of them
		// are indexed in landsOn by the lead each lands on (the survivor
		// it is merged into, or itself).
		wholeHolders []string
		resolved     int
		landsOn      = map[string][]string{}
		// planned are the leads a plain write of this chunk goes to: a
		// later row on one (by another identity, so not linked to it) goes
		// the whole way behind it, else a lost race would store the
		// earlier row after it.
		planned   = map[string]bool{}
		survivors = survivorsOf{a: a, heads: map[string]*eventstore.Record{}, tops: map[string]string{}}
	)
	for _, h := range held {
		if h.Head != nil {
			survivors.heads[h.LeadID] = h.Head
		}
	}
	for i, p := range failed {
		for _, k := range p.ids.all() {
			if h := held[k].LeadID; h != "" && !slices.Contains(p.leads, h) {
				failed[i].leads = append(failed[i].leads, h)
			}
		}
		// A later row on its leads, by any identity, waits behind it: one
		// written now would be stored before the retried failed row.
		for _, l := range failed[i].leads {
			if !behind[l] {
				wholeHolders = append(wholeHolders, l)
			}
			behind[l] = true
		}
	}
	toSingle := func(p pending, leads []string) {
		p.leads = leads
		for _, l := range leads {
			if !behind[l] {
				wholeHolders = append(wholeHolders, l)
			}
			behind[l] = true
		}
		single = append(single, p)
	}
	// mergedBehind are the leads holding identities of rows that go the
	// whole way and land on lead through a merge (merged into it): a
	// resubmission on lead goes the whole way after them, linked to them.
	// A holder whose survivor cannot be read counts as landing anywhere.
	mergedBehind := func(ctx context.Context, lead string) []string {
		for ; resolved < len(wholeHolders); resolved++ {
			h := wholeHolders[resolved]
			top := survivors.top(ctx, h)
			landsOn[top] = append(landsOn[top], h)
		}
		out := slices.DeleteFunc(slices.Clone(landsOn[lead]), func(h string) bool { return h == lead })
		return append(out, landsOn[""]...)
	}
	for _, p := range rowsOK {
		var leads []string
		for _, k := range p.ids.all() {
			if h := held[k].LeadID; h != "" && !slices.Contains(leads, h) {
				leads = append(leads, h)
			}
		}
		if whole[p.i] || slices.ContainsFunc(leads, func(l string) bool { return behind[l] }) {
			toSingle(p, leads)
			continue
		}
		if len(leads) == 0 && !slices.ContainsFunc(p.ids.all(), func(k ClaimKey) bool { return held[k] != (Holder{}) }) {
			run := newCaptureRun(p.l, p.ids, rowMeta(meta, p.l), nil)
			key, ev, err := a.newLeadEvent(ctx, run)
			if err != nil {
				out[p.i].Err = err
				if !RowsOwnFault(err) {
					p.failed = true
					failed = append(failed, p)
				}
				continue
			}
			writes = append(writes, LeadWrite{LeadID: key.LeadID(), Event: ev, Create: true})
			sent = append(sent, sentRow{pending: p, outcome: Created})
			continue
		}
		p.held = map[ClaimKey]Holder{}
		for _, k := range p.ids.all() {
			p.held[k] = held[k]
		}
		run := newCaptureRun(p.l, p.ids, rowMeta(meta, p.l), p.held)
		pl, err := a.planCapture(ctx, run)
		var merged []string
		if err == nil && !pl.create && pl.leadID != "" {
			merged = mergedBehind(ctx, pl.leadID)
		}
		if err != nil || pl.done != nil || len(pl.before) > 0 || len(pl.more) > 0 || behind[pl.leadID] || planned[pl.leadID] || len(merged) > 0 {
			// Anything but a plain resubmission or creation goes the
			// whole way through CaptureLead (so does one on a lead, a
			// merge's survivor, that a row before it goes to that way).
			if pl != nil && pl.leadID != "" {
				leads = append(leads, pl.leadID)
			}
			toSingle(p, append(leads, merged...))
			continue
		}
		p.leads = leads // should its write lose a race (Write)
		planned[pl.leadID] = true
		writes = append(writes, LeadWrite{LeadID: pl.leadID, Event: pl.event, Create: pl.create, Expected: pl.expect})
		sent = append(sent, sentRow{pending: p, outcome: pl.outcome, then: pl.then})
	}
	single = append(single, failed...)
	return &ImportBatch{a: a, meta: meta, out: out, writes: writes, sent: sent, single: single, taken: taken, survivors: survivors, blind: blind}
}

// survivorsOf finds the lead a holder lands on: the survivor at the top of
// its merges, or itself. heads are holders' last events the look-up
// returned (a head that is not a merge needs no read); tops caches what
// was found, "" for a holder whose chain could not be read.
type survivorsOf struct {
	a     *App
	heads map[string]*eventstore.Record
	tops  map[string]string
}

func (s survivorsOf) top(ctx context.Context, holder string) string {
	if top, ok := s.tops[holder]; ok {
		return top
	}
	top := holder
	if head := s.heads[holder]; head == nil || head.Event.GetLeadMerged() != nil {
		var err error
		if top, _, err = s.a.follow(ctx, holder, head); err != nil {
			top = ""
		}
	}
	s.tops[holder] = top
	return top
}

// Write writes a prepared chunk and answers each of its rows, in row
// order.
func (b *ImportBatch) Write(ctx context.Context) []ImportResult {
	a, meta, out, writes, single := b.a, b.meta, b.out, b.writes, b.single
	if len(writes) > 0 {
		versions, errs := a.leads.WriteEach(ctx, writes)
		var wg sync.WaitGroup
		sem := make(chan struct{}, importWorkers)
		for j, r := range b.sent {
			switch {
			case errs[j] == nil:
				out[r.i].Result = CaptureResult{LeadID: writes[j].LeadID, Outcome: r.outcome, Version: versions[j]}
				a.known.add(r.ids.email.Token)
				if r.then == nil {
					continue
				}
				ev := writes[j].Event
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					if err := r.then(ctx, ev); err != nil && ctx.Err() == nil {
						a.log.WarnContext(ctx, "follow-up writes failed; the next capture retries them", "lead", ev.GetLeadId(), "err", err)
					}
				})
			case errors.Is(errs[j], eventstore.ErrConflict):
				// Written by someone else since we looked: the whole way,
				// in order with the chunk's other rows on that lead.
				r.held, r.leads = nil, append(r.leads, writes[j].LeadID)
				single = append(single, r.pending)
			default:
				// Linked with the rows after it, so they are held back.
				out[r.i].Err = errs[j]
				r.failed, r.leads = true, append(r.leads, writes[j].LeadID)
				single = append(single, r.pending)
			}
		}
		wg.Wait()
	}

	// Rows linked by an identity or an idempotency key, however
	// indirectly (a row bringing one person's email and another's external
	// id links both), in row order, so that a repeated person resubmits on
	// the lead its first row made and a key's first row is its first use;
	// unlinked rows side by side.
	slices.SortFunc(single, func(x, y pending) int { return x.i - y.i })
	// A row is linked to the chunk's rows whose holders land on its lead
	// through a merge (two keyed rows, one by an absorbed lead's email, one
	// by its survivor's), a row that lost its race included.
	for i := range single {
		for _, l := range single[i].leads {
			if top := b.survivors.top(ctx, l); top != l && !slices.Contains(single[i].leads, top) {
				single[i].leads = append(single[i].leads, top)
			}
		}
	}
	groups := linked(single)
	if b.blind {
		// Without the look-up nothing says which rows share a lead.
		groups = [][]pending{single}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, importWorkers)
	for _, g := range groups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for k, p := range g {
				if !p.failed {
					out[p.i].Result, out[p.i].Err = a.capture(ctx, p.l, p.ids, rowMeta(meta, p.l), p.held)
				}
				if err := out[p.i].Err; err != nil && !RowsOwnFault(err) {
					// Its outcome is not its own: written now, a later row
					// of the group would come before it when it is sent again.
					for _, q := range g[k+1:] {
						if !q.failed { // one that failed says so itself
							out[q.i].Err = ErrHeldBack
						}
					}
					break
				}
			}
		})
	}
	wg.Wait()
	return out
}

// ErrHeldBack answers a row not written because a row before it that it
// is linked to (one person, one key, one lead) failed: sent again after
// that row, it keeps their order.
var ErrHeldBack = errors.New("not written: a row before it on the same lead failed")

// RowsOwnFault says whether a row's error is its own (a bad field, a key
// reused with other content): the rows after it go on.
func RowsOwnFault(err error) bool {
	var (
		ve *ValidationError
		ke *KeyReusedError
	)
	return errors.As(err, &ve) || errors.As(err, &ke)
}

// linked splits rows into groups that share no identity, no
// idempotency key and no lead, each in the rows' order (a union-find
// over the keys).
func linked(rows []pending) [][]pending {
	parent := make([]int, len(rows))
	var root func(int) int
	root = func(i int) int {
		if parent[i] != i {
			parent[i] = root(parent[i])
		}
		return parent[i]
	}
	first := map[ClaimKey]int{}
	for i, p := range rows {
		parent[i] = i
		keys := p.ids.all()
		if k := p.l.IdempotencyKey; k != "" {
			keys = append(keys, ClaimKey{Kind: "idempotency_key", Token: k})
		}
		for _, l := range p.leads {
			keys = append(keys, ClaimKey{Kind: "lead", Token: l})
		}
		for _, k := range keys {
			if j, ok := first[k]; ok {
				parent[root(i)] = root(j)
			} else {
				first[k] = i
			}
		}
	}
	var groups [][]pending
	at := map[int]int{}
	for i, p := range rows {
		g, ok := at[root(i)]
		if !ok {
			g = len(groups)
			at[root(i)] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], p)
	}
	return groups
}
