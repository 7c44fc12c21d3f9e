package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/form"
)

// Outcome says what a capture did.
type Outcome string

// Outcomes of a capture.
const (
	Created     Outcome = "CREATED"
	Resubmitted Outcome = "RESUBMITTED"
)

// CaptureResult is the answer to a capture.
type CaptureResult struct {
	LeadID  string
	Outcome Outcome
	// Replayed: the idempotency key was seen before; this is the first
	// answer again and nothing was written.
	Replayed bool
	Version  uint64
}

// CaptureLead records one form fill. A new identity (normalized email,
// external id) creates a lead; a known one is recorded on its lead as
// LeadResubmitted. Identity and idempotency claims commit atomically with
// the event, so two racing captures of one email make one lead, and a
// repeated idempotency key returns the first answer.
//
// Errors: *ValidationError, lifecycle.ErrRefused (a resubmission on an
// erased or merged lead), an error matching eventstore.ErrConflict when
// the lead kept changing under us.
func (a *App) CaptureLead(ctx context.Context, in form.Capture, meta eventstore.Meta) (CaptureResult, error) {
	now := a.now()
	lead, v := form.CheckCapture(in, now)
	if err := a.checkCampaign(ctx, &v, "attribution.campaign_id", lead.Attribution.GetCampaignId()); err != nil {
		return CaptureResult{}, err
	}
	if err := invalid(v); err != nil {
		return CaptureResult{}, err
	}
	meta.IdempotencyKey = lead.IdempotencyKey
	meta.OccurredAt = lead.OccurredAt
	ids := a.identity(lead)

	for attempt := range maxRaces {
		res, err := a.captureOnce(ctx, lead, ids, meta)
		if !errors.Is(err, eventstore.ErrConflict) {
			return res, err
		}
		if err := raced(ctx, attempt); err != nil {
			return CaptureResult{}, err
		}
	}
	return CaptureResult{}, fmt.Errorf("capture: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// identities are the claim keys of one capture.
type identities struct {
	email, ext, idem ClaimKey
}

func (ids identities) identity() []ClaimKey {
	keys := []ClaimKey{ids.email}
	if ids.ext.Hash != "" {
		keys = append(keys, ids.ext)
	}
	return keys
}

func (a *App) identity(l form.Lead) identities {
	ids := identities{email: ClaimKey{"email", a.keys.Blind("email", l.Email)}}
	if l.ExternalID != nil {
		ids.ext = ClaimKey{"ext", a.keys.Blind("ext", l.ExternalID.GetSystem()+"\x00"+l.ExternalID.GetId())}
	}
	if l.IdempotencyKey != "" {
		ids.idem = ClaimKey{"idem", a.keys.Blind("idem", "capture\x00"+l.IdempotencyKey)}
	}
	return ids
}

// captureOnce tries the common case first, a new lead, in one atomic
// commit; a held claim sends it down the replay or resubmission path.
func (a *App) captureOnce(ctx context.Context, l form.Lead, ids identities, meta eventstore.Meta) (CaptureResult, error) {
	nl, key, err := a.newLead(l, ids, meta)
	if err != nil {
		return CaptureResult{}, err
	}
	// The key must be stored before the event that needs it: a crash in
	// between leaves an unused key, never a lead that cannot be read.
	if err := a.keys.Save(ctx, key); err != nil {
		return CaptureResult{}, err
	}
	versions, err := a.leads.Create(ctx, nl)
	if err == nil {
		return CaptureResult{LeadID: nl.LeadID, Outcome: Created, Version: versions[0]}, nil
	}
	var held *ClaimedError
	if !errors.As(err, &held) {
		return CaptureResult{}, err
	}
	if held.Key == ids.idem {
		return replay(held.Held), nil
	}
	return a.resubmit(ctx, held.Held.GetLeadId(), held.Key.Kind, l, ids, meta)
}

func (a *App) newLead(l form.Lead, ids identities, meta eventstore.Meta) (NewLead, *vaultKey, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return NewLead{}, nil, err
	}
	leadID := id.String()
	key, err := a.keys.NewKey(leadID)
	if err != nil {
		return NewLead{}, nil, err
	}
	sealed, err := sealContact(key, l.Contact)
	if err != nil {
		return NewLead{}, nil, err
	}
	payload := &eventv1.LeadCaptured{
		SealedContact: sealed,
		Profile:       l.Profile,
		Attribution:   l.Attribution,
		Consents:      l.Consents,
	}
	if l.ExternalID != nil {
		payload.ExternalIdSystem = l.ExternalID.GetSystem()
	}
	ev, _, err := a.leadEvent(leadID, lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, payload, meta, a.now())
	if err != nil {
		return NewLead{}, nil, err
	}
	nl := NewLead{LeadID: leadID, Event: ev}
	if ids.idem.Hash != "" {
		nl.Claims = append(nl.Claims, Claim{ids.idem, &eventv1.Claim{LeadId: leadID, EventId: ev.GetEventId(), Outcome: string(Created)}})
	}
	for _, k := range ids.identity() {
		nl.Claims = append(nl.Claims, Claim{k, &eventv1.Claim{LeadId: leadID, EventId: ev.GetEventId()}})
	}
	return nl, key, nil
}

// resubmit records a capture on the lead that already holds its identity.
func (a *App) resubmit(ctx context.Context, leadID, matchedBy string, l form.Lead, ids identities, meta eventstore.Meta) (CaptureResult, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return CaptureResult{}, err
	}
	state, version := stateOf(recs)
	key, err := a.keys.Key(ctx, leadID)
	if err != nil {
		return CaptureResult{}, fmt.Errorf("resubmit on %s: %w", leadID, err)
	}
	sealed, err := sealContact(key, l.Contact)
	if err != nil {
		return CaptureResult{}, err
	}
	if matchedBy == "ext" {
		matchedBy = "external_id"
	}
	payload := &eventv1.LeadResubmitted{SealedContact: sealed, Profile: l.Profile, Attribution: l.Attribution, MatchedBy: matchedBy}
	ev, _, err := a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.Resubmit}, payload, meta, a.now())
	if err != nil {
		return CaptureResult{}, err
	}
	var idem *Claim
	if ids.idem.Hash != "" {
		idem = &Claim{ids.idem, &eventv1.Claim{LeadId: leadID, EventId: ev.GetEventId(), Outcome: string(Resubmitted)}}
	}
	v, err := a.leads.Append(ctx, leadID, version, idem, ev)
	var held *ClaimedError
	if errors.As(err, &held) {
		return replay(held.Held), nil
	}
	if err != nil {
		return CaptureResult{}, err
	}
	return CaptureResult{LeadID: leadID, Outcome: Resubmitted, Version: v}, nil
}

func replay(c *eventv1.Claim) CaptureResult {
	return CaptureResult{LeadID: c.GetLeadId(), Outcome: Outcome(c.GetOutcome()), Replayed: true}
}

func sealContact(key *vaultKey, c *eventv1.Contact) ([]byte, error) {
	plain, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	return key.Seal(plain)
}

// checkCampaign adds a violation when a campaign id is given but unknown.
func (a *App) checkCampaign(ctx context.Context, v *form.Violations, field, id string) error {
	if id == "" {
		return nil
	}
	for _, x := range *v {
		if x.Field == field {
			return nil // already refused for its form
		}
	}
	ok, err := a.campaigns.Exists(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		v.Add(field, "names no registered campaign")
	}
	return nil
}
