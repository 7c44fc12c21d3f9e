// Package adapters implements intake's ports on pkg/eventstore.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/app"
)

var (
	_ app.Leads     = (*Leads)(nil)
	_ app.Campaigns = (*Campaigns)(nil)
)

// Leads stores lead events, identity claims and idempotency records in
// the event stream.
type Leads struct {
	store *eventstore.Store
}

// NewLeads returns the lead repository.
func NewLeads(store *eventstore.Store) *Leads { return &Leads{store: store} }

func claimSubject(k app.ClaimKey) string { return eventstore.ClaimSubject(k.Kind, k.Token) }

func recordSubject(token string) string { return eventstore.ClaimSubject("idem", token) }

// underToken matches every subject whose last token is token: a lead
// whose id it is, and every claim or record under it. Identity tokens
// and derived lead ids share one space, so one check covers both.
func underToken(token string) string { return "*.*." + token }

// Load returns a lead's events.
func (l *Leads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return l.store.Load(ctx, eventstore.LeadSubject(leadID))
}

// Head returns a lead's last event, nil if it has none.
func (l *Leads) Head(ctx context.Context, leadID string) (*eventstore.Record, error) {
	subj := eventstore.LeadSubject(leadID)
	last, err := l.store.Last(ctx, subj)
	if err != nil {
		return nil, err
	}
	raw, ok := last[subj]
	if !ok {
		return nil, nil
	}
	return decode(raw)
}

// After returns a lead's first event after version, nil if none.
func (l *Leads) After(ctx context.Context, leadID string, version uint64) (*eventstore.Record, error) {
	r, ok, err := l.store.NextEvent(ctx, eventstore.LeadSubject(leadID), version)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// Get returns the event stored at seq.
func (l *Leads) Get(ctx context.Context, seq uint64) (*eventstore.Record, error) {
	raw, err := l.store.Get(ctx, seq)
	if err != nil {
		return nil, err
	}
	return decode(raw)
}

func decode(raw eventstore.Raw) (*eventstore.Record, error) {
	ev, err := eventstore.DecodeEvent(raw.Data)
	if err != nil {
		return nil, fmt.Errorf("%s seq %d: %w", raw.Subject, raw.Seq, err)
	}
	return &eventstore.Record{Seq: raw.Seq, Subject: raw.Subject, Time: raw.Time, Event: ev}, nil
}

// Append appends events to a lead at version expected.
func (l *Leads) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	return l.store.Append(ctx, eventstore.LeadSubject(leadID), expected, events...)
}

// Create writes a lead's first event if nothing is stored under its id:
// neither events nor a claim whose token the id is.
func (l *Leads) Create(ctx context.Context, leadID string, ev *eventv1.Event) (uint64, error) {
	seqs, err := l.store.Commit(ctx, eventstore.Write{Subject: eventstore.LeadSubject(leadID), ExpectFilter: underToken(leadID), Event: ev})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// Commit appends to several leads all or nothing, in one atomic batch.
func (l *Leads) Commit(ctx context.Context, appends ...app.LeadAppend) ([]uint64, error) {
	var writes []eventstore.Write
	last := make([]int, len(appends))
	for i, a := range appends {
		for j, ev := range a.Events {
			writes = append(writes, eventstore.Write{Subject: eventstore.LeadSubject(a.LeadID), Expect: a.Expected, Unchecked: j > 0, Event: ev})
		}
		last[i] = len(writes) - 1
	}
	seqs, err := l.store.Commit(ctx, writes...)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(appends))
	for i, at := range last {
		out[i] = seqs[at]
	}
	return out, nil
}

// WriteEach writes one event to each of many leads, as Create or Append
// would, sent together (eventstore.CommitEach): a bulk import's chunk costs
// about one round trip, not one per lead.
func (l *Leads) WriteEach(ctx context.Context, leads []app.LeadWrite) ([]uint64, []error) {
	writes := make([]eventstore.Write, len(leads))
	for i, w := range leads {
		writes[i] = eventstore.Write{Subject: eventstore.LeadSubject(w.LeadID), Expect: w.Expected, Event: w.Event}
		if w.Create {
			writes[i].Expect, writes[i].ExpectFilter = 0, underToken(w.LeadID)
		}
	}
	return l.store.CommitEach(ctx, writes)
}

// Holders looks identities up in one request (a few, side by side, for
// many keys): each one's claim, and for an email the lead whose id is its
// token (a lead created from that email holds it without a claim).
func (l *Leads) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	out := make(map[app.ClaimKey]app.Holder, len(keys))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	// The server answers at most 1,024 subjects of one request, and a key
	// has at most two.
	const perRequest = 500
	for from := 0; from < len(keys); from += perRequest {
		part := keys[from:min(from+perRequest, len(keys))]
		wg.Go(func() {
			got, err := l.holders(ctx, part)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for k, h := range got {
				out[k] = h
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (l *Leads) holders(ctx context.Context, keys []app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	out := make(map[app.ClaimKey]app.Holder, len(keys))
	var subjects []string
	for _, k := range keys {
		subjects = append(subjects, claimSubject(k))
		if k.Kind == app.KindEmail {
			subjects = append(subjects, eventstore.LeadSubject(k.Token))
		}
	}
	last, err := l.store.Last(ctx, subjects...)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		var h app.Holder
		if raw, ok := last[claimSubject(k)]; ok {
			c, err := eventstore.DecodeClaim(raw)
			if err != nil {
				return nil, err
			}
			h.LeadID, h.Released, h.Seq = c.GetLeadId(), c.GetLeadId() == "", raw.Seq
		} else if raw, ok := last[eventstore.LeadSubject(k.Token)]; ok && k.Kind == app.KindEmail {
			rec, err := decode(raw)
			if err != nil {
				return nil, err
			}
			h.LeadID, h.Head = k.Token, rec
		}
		out[k] = h
	}
	return out, nil
}

// Claim writes a claim on key if the key is still as seen: its claim's
// last sequence unchanged, and when it was free and never claimed,
// nothing at all stored under its token. Released keys keep their
// history: a release is a claim without a lead.
func (l *Leads) Claim(ctx context.Context, key app.ClaimKey, seen app.Holder, claim *eventv1.Claim) error {
	_, err := l.store.Commit(ctx, claimWrite(key, seen, claim))
	return err
}

func claimWrite(key app.ClaimKey, seen app.Holder, claim *eventv1.Claim) eventstore.Write {
	w := eventstore.Write{Subject: claimSubject(key), Expect: seen.Seq, Claim: claim}
	if seen.Seq == 0 && seen.LeadID == "" {
		w.ExpectFilter = underToken(key.Token)
	}
	return w
}

// Record returns the idempotency record of token and its sequence; nil
// when there is none.
func (l *Leads) Record(ctx context.Context, token string) (*eventv1.IdempotencyRecord, uint64, error) {
	subj := recordSubject(token)
	last, err := l.store.Last(ctx, subj)
	if err != nil {
		return nil, 0, err
	}
	raw, ok := last[subj]
	if !ok {
		return nil, 0, nil
	}
	rec := &eventv1.IdempotencyRecord{}
	if err := decodeAs(raw, rec); err != nil {
		return nil, 0, err
	}
	return rec, raw.Seq, nil
}

// PutRecord writes the record of token if its last sequence is expect (0:
// none yet). A record is never deleted, so a key never expires.
func (l *Leads) PutRecord(ctx context.Context, token string, rec *eventv1.IdempotencyRecord, expect uint64) (uint64, error) {
	// The id is this write's own, so that a retried publish is recognised
	// as this one and no other: two attempts of one key writing at the
	// same version conflict, the second does not take the first's record
	// for its own.
	seqs, err := l.store.Commit(ctx, eventstore.Write{Subject: recordSubject(token), Expect: expect, Record: rec,
		RecordID: fmt.Sprintf("%s@%d@%s", rec.GetEventId(), expect, uuid.NewString())})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

func decodeAs(raw eventstore.Raw, m proto.Message) error {
	if t := raw.Header.Get(eventstore.HeaderType); t != string(m.ProtoReflect().Descriptor().Name()) {
		return fmt.Errorf("%s seq %d: a %q, not a %s", raw.Subject, raw.Seq, t, m.ProtoReflect().Descriptor().Name())
	}
	if err := proto.Unmarshal(raw.Data, m); err != nil {
		return fmt.Errorf("%s seq %d: %w", raw.Subject, raw.Seq, err)
	}
	return nil
}

// Campaigns stores campaign events. Registered campaigns are remembered:
// a campaign is never unregistered, so a positive answer cannot go stale.
type Campaigns struct {
	store *eventstore.Store
	known sync.Map
}

// NewCampaigns returns the campaign repository.
func NewCampaigns(store *eventstore.Store) *Campaigns { return &Campaigns{store: store} }

// Append appends one event to a campaign at version expected.
func (c *Campaigns) Append(ctx context.Context, campaignID string, expected uint64, ev *eventv1.Event) (uint64, error) {
	return c.store.Append(ctx, eventstore.CampaignSubject(campaignID), expected, ev)
}

// Load returns a campaign's events.
func (c *Campaigns) Load(ctx context.Context, campaignID string) ([]eventstore.Record, error) {
	return c.store.Load(ctx, eventstore.CampaignSubject(campaignID))
}

// Exists reports whether a campaign was registered.
func (c *Campaigns) Exists(ctx context.Context, campaignID string) (bool, error) {
	if _, ok := c.known.Load(campaignID); ok {
		return true, nil
	}
	v, err := c.store.Version(ctx, eventstore.CampaignSubject(campaignID))
	if err != nil {
		return false, err
	}
	if v > 0 {
		c.known.Store(campaignID, struct{}{})
	}
	return v > 0, nil
}
