// Package adapters implements intake's ports on pkg/eventstore.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/app"
)

var (
	_ app.Leads     = (*Leads)(nil)
	_ app.Campaigns = (*Campaigns)(nil)
)

// Leads stores lead events and claims in the event stream.
type Leads struct {
	store *eventstore.Store
}

// NewLeads returns the lead repository.
func NewLeads(store *eventstore.Store) *Leads { return &Leads{store: store} }

func claimSubject(k app.ClaimKey) string { return eventstore.ClaimSubject(k.Kind, k.Hash) }

// Create stores each lead's claims and first event in one atomic commit.
// A taken claim comes back as *app.ClaimedError with what it holds.
func (l *Leads) Create(ctx context.Context, leads ...app.NewLead) ([]uint64, error) {
	var writes []eventstore.Write
	eventAt := make([]int, len(leads))
	for i, nl := range leads {
		for _, c := range nl.Claims {
			writes = append(writes, eventstore.Write{Subject: claimSubject(c.Key), Claim: c.Claim})
		}
		eventAt[i] = len(writes)
		writes = append(writes, eventstore.Write{Subject: eventstore.LeadSubject(nl.LeadID), Event: nl.Event})
	}
	seqs, err := l.store.Commit(ctx, writes...)
	if err != nil {
		return nil, l.claimed(ctx, err)
	}
	out := make([]uint64, len(leads))
	for i, at := range eventAt {
		out[i] = seqs[at]
	}
	return out, nil
}

// Claim takes one claim: the first message on its subject wins.
func (l *Leads) Claim(ctx context.Context, key app.ClaimKey, claim *eventv1.Claim) error {
	_, err := l.store.Commit(ctx, eventstore.Write{Subject: claimSubject(key), Claim: claim})
	if err != nil {
		return l.claimed(ctx, err)
	}
	return nil
}

// Append appends events to a lead at version expected.
func (l *Leads) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	return l.store.Append(ctx, eventstore.LeadSubject(leadID), expected, events...)
}

// claimed turns a conflict on a claim subject into *app.ClaimedError.
func (l *Leads) claimed(ctx context.Context, err error) error {
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) {
		return err
	}
	kind, hash, ok := parseClaim(ce.Subject)
	if !ok {
		return err
	}
	key := app.ClaimKey{Kind: kind, Hash: hash}
	held, lerr := l.Claims(ctx, key)
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	if c, ok := held[key]; ok {
		return &app.ClaimedError{Key: key, Held: c}
	}
	return err
}

func parseClaim(subject string) (kind, hash string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "claim.")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}

// Load returns a lead's events.
func (l *Leads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return l.store.Load(ctx, eventstore.LeadSubject(leadID))
}

// Claims returns the held claims among keys, in one request.
func (l *Leads) Claims(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]*eventv1.Claim, error) {
	out := map[app.ClaimKey]*eventv1.Claim{}
	if len(keys) == 0 {
		return out, nil
	}
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = claimSubject(k)
	}
	last, err := l.store.Last(ctx, subjects...)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		raw, ok := last[subjects[i]]
		if !ok {
			continue
		}
		c, err := eventstore.DecodeClaim(raw)
		if err != nil {
			return nil, fmt.Errorf("claim %s: %w", subjects[i], err)
		}
		out[k] = c
	}
	return out, nil
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
