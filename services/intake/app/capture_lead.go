package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
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
// LeadResubmitted.
//
// How it stays one lead per identity without an atomic batch (which costs
// milliseconds on a single-replica file stream): the identity is claimed
// first, on its own subject, where the server lets exactly one writer win;
// the lead's first event follows at expected version 0. A claim whose
// lead has no event yet (its writer crashed, or is about to write) is
// adopted by the next capture of that identity, which writes the first
// event itself; the server again lets only one of them win, and the loser
// records its capture as a resubmission.
//
// An idempotency key travels in the event's envelope: a repeat of the
// request finds it in the lead's history and gets the first answer. Keys
// are matched within the lead the request's identity names, and never
// expire.
//
// Errors: *ValidationError, lifecycle.ErrRefused (a resubmission on an
// erased or merged lead), an error matching eventstore.ErrConflict when
// the lead kept changing under us.
func (a *App) CaptureLead(ctx context.Context, in form.Capture, meta envelope.Meta) (CaptureResult, error) {
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
		if err := eventstore.AfterConflict(ctx, attempt); err != nil {
			return CaptureResult{}, err
		}
	}
	return CaptureResult{}, fmt.Errorf("capture: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// identities are the claim keys of one capture.
type identities struct {
	email, ext ClaimKey
}

func (a *App) identity(l form.Lead) identities {
	ids := identities{email: ClaimKey{"email", a.keys.Blind("email", l.Email)}}
	if l.ExternalID != nil {
		ids.ext = ClaimKey{"ext", a.keys.Blind("ext", l.ExternalID.GetSystem()+"\x00"+l.ExternalID.GetId())}
	}
	return ids
}

func (ids identities) all() []ClaimKey {
	if ids.ext.Hash == "" {
		return []ClaimKey{ids.email}
	}
	return []ClaimKey{ids.ext, ids.email}
}

func (a *App) captureOnce(ctx context.Context, l form.Lead, ids identities, meta envelope.Meta) (CaptureResult, error) {
	if ids.ext.Hash != "" {
		// An external id is the stronger match: look both up first so a
		// known external id wins over a new email.
		held, err := a.leads.Claims(ctx, ids.all()...)
		if err != nil {
			return CaptureResult{}, err
		}
		for _, k := range ids.all() {
			if c, ok := held[k]; ok {
				return a.onExisting(ctx, c.GetLeadId(), k.Kind, l, meta)
			}
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return CaptureResult{}, err
	}
	leadID := id.String()
	key, err := a.keys.NewKey(leadID)
	if err != nil {
		return CaptureResult{}, err
	}
	// Store the new lead's key while claiming its identity: a key for a
	// lead id that loses its claim is never used, and costs nothing.
	saved := make(chan error, 1)
	go func() { saved <- a.keys.Save(ctx, key) }()
	err = a.leads.Claim(ctx, ids.email, claimFor(leadID, ids.email))
	if serr := <-saved; serr != nil && err == nil {
		return CaptureResult{}, serr
	}
	var held *ClaimedError
	if errors.As(err, &held) {
		return a.onExisting(ctx, held.Held.GetLeadId(), "email", l, meta)
	}
	if err != nil {
		return CaptureResult{}, err
	}
	if ids.ext.Hash != "" {
		// Lost to a concurrent capture with this external id and another
		// email: both are recorded; the two leads are a merge candidate.
		if err := a.leads.Claim(ctx, ids.ext, claimFor(leadID, ids.ext)); err != nil && !errors.As(err, &held) {
			return CaptureResult{}, err
		}
	}
	return a.create(ctx, key, l, meta)
}

// claimFor is a claim of key for a lead. Its id, unique per lead and kind,
// lets the store drop a retried publish of the same claim.
func claimFor(leadID string, key ClaimKey) *eventv1.Claim {
	return &eventv1.Claim{LeadId: leadID, EventId: "claim-" + key.Kind + "-" + leadID}
}

// create writes a claimed lead's first event, sealed with its key, which
// is already stored: a crash in between leaves an unused key, never a
// lead whose data cannot be read.
func (a *App) create(ctx context.Context, key *vault.Key, l form.Lead, meta envelope.Meta) (CaptureResult, error) {
	leadID := key.LeadID()
	ev, err := a.capturedEvent(key, l, meta)
	if err != nil {
		return CaptureResult{}, err
	}
	v, err := a.leads.Append(ctx, leadID, 0, ev)
	if errors.Is(err, eventstore.ErrConflict) {
		// Another capture adopted the claim first: ours is a resubmission.
		return a.onExisting(ctx, leadID, "email", l, meta)
	}
	if err != nil {
		return CaptureResult{}, err
	}
	return CaptureResult{LeadID: leadID, Outcome: Created, Version: v}, nil
}

// keyFor returns the lead's data key, making and storing it if the lead
// has none yet (a new lead, or a claim whose writer died before it).
func (a *App) keyFor(ctx context.Context, leadID string) (*vault.Key, error) {
	key, err := a.keys.Key(ctx, leadID)
	if !errors.Is(err, vault.ErrNoKey) {
		return key, err
	}
	if key, err = a.keys.NewKey(leadID); err != nil {
		return nil, err
	}
	err = a.keys.Save(ctx, key)
	if errors.Is(err, vault.ErrKeyExists) {
		// A concurrent adopter stored one first; use that.
		return a.keys.Key(ctx, leadID)
	}
	return key, err
}

// onExisting records a capture on the lead that holds its identity: a
// replay when the idempotency key is in the lead's history, the first
// event when the lead has none yet (adoption), else a resubmission.
func (a *App) onExisting(ctx context.Context, leadID, matchedBy string, l form.Lead, meta envelope.Meta) (CaptureResult, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return CaptureResult{}, err
	}
	if len(recs) == 0 {
		key, err := a.keyFor(ctx, leadID)
		if err != nil {
			return CaptureResult{}, err
		}
		return a.create(ctx, key, l, meta)
	}
	if k := l.IdempotencyKey; k != "" {
		for _, r := range recs {
			if r.Event.GetIdempotencyKey() != k {
				continue
			}
			switch r.Event.GetPayload().(type) {
			case *eventv1.Event_LeadCaptured:
				return CaptureResult{LeadID: leadID, Outcome: Created, Replayed: true}, nil
			case *eventv1.Event_LeadResubmitted:
				return CaptureResult{LeadID: leadID, Outcome: Resubmitted, Replayed: true}, nil
			}
		}
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
	v, err := a.leads.Append(ctx, leadID, version, ev)
	if err != nil {
		return CaptureResult{}, err
	}
	return CaptureResult{LeadID: leadID, Outcome: Resubmitted, Version: v}, nil
}

// capturedEvent is a new lead's LeadCaptured, its contact sealed with key.
func (a *App) capturedEvent(key *vault.Key, l form.Lead, meta envelope.Meta) (*eventv1.Event, error) {
	sealed, err := sealContact(key, l.Contact)
	if err != nil {
		return nil, err
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
	ev, _, err := a.leadEvent(key.LeadID(), lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, payload, meta, a.now())
	return ev, err
}

func sealContact(key *vault.Key, c *eventv1.Contact) ([]byte, error) {
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
