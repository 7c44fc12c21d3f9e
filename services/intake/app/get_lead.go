package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// LeadView is a lead folded from its events.
type LeadView struct {
	LeadID      string
	State       lifecycle.State
	Contact     *eventv1.Contact // nil once erased
	Profile     *eventv1.Profile
	Attribution *eventv1.Attribution
	Consents    []*eventv1.Consent
	CapturedAt  time.Time
	UpdatedAt   time.Time
	Version     uint64
	Submissions int
	Activities  int
	Erased      bool
}

// GetLead folds a lead's events into its current view, opening the
// latest submitted contact with the lead's key.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) GetLead(ctx context.Context, leadID string) (LeadView, error) {
	recs, err := a.load(ctx, leadID)
	if err != nil {
		return LeadView{}, err
	}
	state, version := stateOf(recs)
	view := LeadView{LeadID: leadID, State: state, Version: version, Profile: &eventv1.Profile{}, Attribution: &eventv1.Attribution{}}
	var sealed [][]byte
	consents := map[eventv1.ConsentChannel]*eventv1.Consent{}
	var order []eventv1.ConsentChannel
	setConsent := func(c *eventv1.Consent) {
		if _, ok := consents[c.GetChannel()]; !ok {
			order = append(order, c.GetChannel())
		}
		consents[c.GetChannel()] = c
	}
	for _, r := range recs {
		ev := r.Event
		view.UpdatedAt = r.Time
		switch p := envelope.Payload(ev).(type) {
		// A later submission adds what it says and keeps the rest: its
		// set fields win (proto.Merge copies only populated fields).
		case *eventv1.LeadCaptured:
			view.CapturedAt = ev.GetOccurredAt().AsTime()
			view.Submissions++
			sealed = append(sealed, p.GetSealedContact())
			proto.Merge(view.Profile, p.GetProfile())
			proto.Merge(view.Attribution, p.GetAttribution())
			for _, c := range p.GetConsents() {
				setConsent(c)
			}
		case *eventv1.LeadResubmitted:
			view.Submissions++
			sealed = append(sealed, p.GetSealedContact())
			proto.Merge(view.Profile, p.GetProfile())
		case *eventv1.ActivityRecorded:
			view.Activities++
		case *eventv1.ConsentChanged:
			setConsent(p.GetConsent())
		case *eventv1.LeadErased:
			view.Erased = true
		}
	}
	for _, ch := range order {
		view.Consents = append(view.Consents, consents[ch])
	}
	if !view.Erased {
		contact, err := a.openContacts(ctx, leadID, sealed)
		if errors.Is(err, vault.ErrShredded) {
			view.Erased = true
		} else if err != nil {
			return LeadView{}, err
		}
		view.Contact = contact
	}
	return view, nil
}

// openContacts opens every submitted contact of a lead, oldest first,
// and merges them: the latest value of each field wins.
func (a *App) openContacts(ctx context.Context, leadID string, sealed [][]byte) (*eventv1.Contact, error) {
	out := &eventv1.Contact{}
	for _, s := range sealed {
		plain, err := a.keys.Open(ctx, leadID, s)
		if err != nil {
			return nil, fmt.Errorf("open contact of %s: %w", leadID, err)
		}
		c := &eventv1.Contact{}
		if err := proto.Unmarshal(plain, c); err != nil {
			return nil, fmt.Errorf("decode contact of %s: %w", leadID, err)
		}
		proto.Merge(out, c)
	}
	return out, nil
}

// TimelineEntry is one event of a lead with a one-line summary.
type TimelineEntry struct {
	Record  eventstore.Record
	Summary string
}

// GetLeadTimeline returns every event of a lead, read from the stream,
// each with a summary that holds no personal data.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) GetLeadTimeline(ctx context.Context, leadID string) ([]TimelineEntry, error) {
	recs, err := a.load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	out := make([]TimelineEntry, len(recs))
	for i, r := range recs {
		out[i] = TimelineEntry{Record: r, Summary: Summarize(r.Event)}
	}
	return out, nil
}

func (a *App) load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	var v form.Violations
	form.ID(&v, "lead_id", leadID, true)
	if err := invalid(v); err != nil {
		return nil, err
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	return recs, nil
}

// Summarize describes an event in one line without personal data.
func Summarize(ev *eventv1.Event) string {
	lc := ev.GetLifecycle()
	after := ""
	if lc != nil {
		after = fmt.Sprintf(" → %s", lifecycle.Status(lc.GetStatus()))
		if o := lc.GetOwner(); o.GetId() != "" {
			after += fmt.Sprintf(" (owner %s %s", lifecycle.OwnerKind(o.GetKind()), o.GetId())
			if d := lc.GetDeadline(); d != nil {
				after += ", due " + d.AsTime().Format(time.RFC3339)
			}
			after += ")"
		}
	}
	var what string
	switch p := envelope.Payload(ev).(type) {
	case *eventv1.LeadCaptured:
		what = fmt.Sprintf("captured from %s", p.GetAttribution().GetSource())
		if c := p.GetAttribution().GetCampaignId(); c != "" {
			what += " for campaign " + c
		}
	case *eventv1.LeadResubmitted:
		what = fmt.Sprintf("submitted again from %s (matched by %s)", p.GetAttribution().GetSource(), p.GetMatchedBy())
	case *eventv1.ActivityRecorded:
		what = fmt.Sprintf("activity %s", p.GetType())
	case *eventv1.ConsentChanged:
		what = fmt.Sprintf("consent %s %s", p.GetConsent().GetChannel(), p.GetConsent().GetStatus())
	case *eventv1.LeadScored:
		what = fmt.Sprintf("scored %d (fit %d, engagement %d) by model %s v%d", p.GetTotal(), p.GetFit(), p.GetEngagement(), p.GetModelId(), p.GetModelVersion())
	case *eventv1.LeadQualified:
		what = fmt.Sprintf("qualified with %d ≥ %d", p.GetScore(), p.GetThreshold())
	case *eventv1.LeadDisqualified:
		what = fmt.Sprintf("disqualified: %s", p.GetReason())
	default:
		what = ev.GetEventType()
	}
	return what + after
}
