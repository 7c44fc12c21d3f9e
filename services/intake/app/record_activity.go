package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/form"
)

// RecordActivity is an engagement signal for a lead.
type RecordActivity struct {
	LeadID     string
	ActivityID string
	Type       eventv1.ActivityType
	CampaignID string
	Detail     string
	OccurredAt time.Time
	Actor      *eventv1.Actor
}

// Written is the answer to a write on an existing lead or campaign.
type Written struct {
	Version  uint64
	Replayed bool
}

// RecordActivity appends ActivityRecorded to a lead. The activity id makes
// a repeat a no-op: it is found in the lead's history.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused (an erased
// or merged lead), eventstore.ErrConflict after repeated races.
func (a *App) RecordActivity(ctx context.Context, in RecordActivity, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.ID(&v, "lead_id", in.LeadID, true)
	form.ID(&v, "activity_id", in.ActivityID, true)
	form.Enum(&v, "type", int32(in.Type), form.Defined(eventv1.ActivityType_name), true)
	form.ID(&v, "campaign_id", in.CampaignID, false)
	form.Text(&v, "detail", in.Detail, form.MaxDetail, false)
	form.Time(&v, "occurred_at", in.OccurredAt, a.now())
	form.Actor(&v, "actor", in.Actor)
	if err := a.checkCampaign(ctx, &v, "campaign_id", in.CampaignID); err != nil {
		return Written{}, err
	}
	if err := invalid(v); err != nil {
		return Written{}, err
	}
	meta.Actor, meta.OccurredAt = orActor(in.Actor, meta.Actor), in.OccurredAt
	payload := &eventv1.ActivityRecorded{ActivityId: in.ActivityID, Type: in.Type, CampaignId: in.CampaignID, Detail: in.Detail}
	seen := func(ev *eventv1.Event) bool {
		return ev.GetActivityRecorded().GetActivityId() == in.ActivityID
	}
	return a.appendToLead(ctx, in.LeadID, lifecycle.Command{Name: lifecycle.RecordActivity}, payload, meta, seen)
}

// appendToLead is the read-decide-append loop of every command on an
// existing lead: load, stop if seen says the command already happened,
// decide, append at the loaded version, and on a lost race do it again.
func (a *App) appendToLead(ctx context.Context, leadID string, cmd lifecycle.Command, payload eventPayload, meta envelope.Meta, seen func(*eventv1.Event) bool) (Written, error) {
	for attempt := range maxRaces {
		recs, err := a.leads.Load(ctx, leadID)
		if err != nil {
			return Written{}, err
		}
		if len(recs) == 0 {
			return Written{}, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
		}
		state, version := stateOf(recs)
		for _, r := range recs {
			if seen(r.Event) {
				return Written{Version: version, Replayed: true}, nil
			}
		}
		ev, _, err := a.leadEvent(leadID, state, cmd, payload, meta, a.now())
		if err != nil {
			return Written{}, err
		}
		nv, err := a.leads.Append(ctx, leadID, version, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Written{}, err
			}
			continue
		}
		if err != nil {
			return Written{}, err
		}
		return Written{Version: nv}, nil
	}
	return Written{}, fmt.Errorf("lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

func orActor(a, fallback *eventv1.Actor) *eventv1.Actor {
	if a != nil {
		return a
	}
	return fallback
}
