package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/vault"
)

// Export is everything held about a lead, decrypted.
type Export struct {
	View        LeadView
	Submissions []ExportedSubmission
	Activities  []ExportedActivity
	Events      []TimelineEntry
}

// ExportedSubmission is one form fill, its personal fields opened (nil
// once the lead is erased).
type ExportedSubmission struct {
	Seq         uint64
	OccurredAt  time.Time
	EventType   string
	Personal    *eventv1.Personal
	Profile     *eventv1.Profile
	Attribution *eventv1.Attribution
	Consents    []*eventv1.Consent
}

// ExportedActivity is one engagement signal, its detail opened.
type ExportedActivity struct {
	Seq        uint64
	OccurredAt time.Time
	ActivityID string
	Type       eventv1.ActivityType
	CampaignID string
	Detail     string
}

// ExportLead returns everything held about a lead for an access request:
// its current view, every submission and activity with their personal
// fields opened, and its whole history as stored.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) ExportLead(ctx context.Context, leadID string) (Export, error) {
	view, err := a.GetLead(ctx, leadID)
	if err != nil {
		return Export{}, err
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return Export{}, err
	}
	// The view came from the same events, possibly fewer: fold what was
	// loaded now.
	_, subs := fold(leadID, recs)
	out := Export{View: view}
	for _, sub := range subs {
		es := ExportedSubmission{Seq: sub.rec.Seq, OccurredAt: sub.rec.Event.GetOccurredAt().AsTime(), EventType: sub.rec.Event.GetEventType(),
			Profile: sub.profile, Attribution: sub.attribution, Consents: sub.consents}
		if !view.Erased {
			p, err := a.openPersonal(ctx, leadID, sub)
			if err != nil && !errors.Is(err, vault.ErrNoKey) {
				return Export{}, err
			}
			es.Personal = p
		}
		out.Submissions = append(out.Submissions, es)
	}
	for _, r := range recs {
		out.Events = append(out.Events, TimelineEntry{Record: r, Summary: Summarize(r.Event)})
		act, ok := envelope.Payload(r.Event).(*eventv1.ActivityRecorded)
		if !ok {
			continue
		}
		detail, err := a.openDetail(ctx, leadID, r, act, view.Erased)
		if err != nil {
			return Export{}, err
		}
		out.Activities = append(out.Activities, ExportedActivity{Seq: r.Seq, OccurredAt: r.Event.GetOccurredAt().AsTime(),
			ActivityID: act.GetActivityId(), Type: act.GetType(), CampaignID: act.GetCampaignId(), Detail: detail})
	}
	return out, nil
}

// openDetail is an activity's detail: sealed in newer events, in the
// clear in older ones.
func (a *App) openDetail(ctx context.Context, leadID string, r eventstore.Record, act *eventv1.ActivityRecorded, erased bool) (string, error) {
	if len(act.GetSealedDetail()) == 0 {
		return act.GetDetail(), nil
	}
	if erased {
		return "", nil
	}
	plain, err := a.keys.Open(ctx, leadID, act.GetSealedDetail())
	if err != nil {
		return "", fmt.Errorf("open activity detail at %d: %w", r.Seq, err)
	}
	return string(plain), nil
}
