package app

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/leadflow/leadflow/pkg/envelope"
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
	// LeadID is the lead a fact was recorded on: the survivor when the
	// lead named was merged into it.
	LeadID   string
	Version  uint64
	Replayed bool
}

// RecordActivity appends ActivityRecorded to a lead, its free-text detail
// sealed with the lead's key. The activity id is the command's
// idempotency key: a repeat returns the first answer from its record,
// and the same id with other content is refused. An activity of a merged
// lead is the survivor's.
//
// Errors: *ValidationError, *KeyReusedError, ErrNotFound,
// lifecycle.ErrRefused (an erased lead), eventstore.ErrConflict after
// repeated races.
func (a *App) RecordActivity(ctx context.Context, in RecordActivity, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.LeadID(&v, "lead_id", in.LeadID)
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
	meta.Actor, meta.OccurredAt = meta.ActorOr(in.Actor), in.OccurredAt
	key, err := a.newIdemKey("activity_id", "activity", in.ActivityID,
		wrapperspb.String(in.LeadID), &eventv1.ActivityRecorded{Type: in.Type, CampaignId: in.CampaignID, Detail: in.Detail},
		ts(in.OccurredAt), in.Actor)
	if err != nil {
		return Written{}, err
	}
	// planOnLead only reads, unless it seals a detail: that may take a key
	// for the lead, a write a repeat must not make.
	key.pure = in.Detail == ""
	cmd := lifecycle.Command{Name: lifecycle.RecordActivity}
	ans, err := a.once(ctx, key, func(ctx context.Context) (*plan, error) {
		return a.planOnLead(ctx, in.LeadID, cmd, meta, func(leadID string, _ lifecycle.State) (eventPayload, error) {
			payload := &eventv1.ActivityRecorded{ActivityId: in.ActivityID, Type: in.Type, CampaignId: in.CampaignID}
			owner := leadID
			if leadID != in.LeadID {
				// Sent on from a merged lead: that person's, as a
				// resubmission through it is (planCapture).
				payload.MergedFrom, owner = in.LeadID, in.LeadID
			}
			if in.Detail == "" {
				return payload, nil
			}
			k, err := a.sealingKey(ctx, owner)
			if err != nil {
				return nil, fmt.Errorf("seal detail for %s: %w", owner, err)
			}
			payload.SealedDetail, err = k.Seal([]byte(in.Detail))
			return payload, err
		})
	})
	return Written{LeadID: ans.LeadID, Version: ans.Version, Replayed: ans.Replayed}, err
}

// planOnLead decides a command on an existing lead from its last event:
// the lifecycle first, then the payload (which may need the lead's key).
// A merged lead's facts are its survivor's, so the command goes there: a
// caller holding the absorbed lead's id (a consent withdrawal, a click)
// is not refused.
func (a *App) planOnLead(ctx context.Context, leadID string, cmd lifecycle.Command, meta envelope.Meta, payload func(leadID string, st lifecycle.State) (eventPayload, error)) (*plan, error) {
	leadID, head, err := a.follow(ctx, leadID, nil)
	if err != nil {
		return nil, err
	}
	if head == nil {
		return nil, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	state, version := headState(head)
	now := a.now()
	// Refuse before sealing: an erased lead has no key to seal with.
	if _, err := lifecycle.Decide(state, cmd, a.policy, now); err != nil {
		return nil, err
	}
	p, err := payload(leadID, state)
	if err != nil {
		return nil, err
	}
	ev, _, err := a.leadEvent(leadID, state, cmd, p, meta, now)
	if err != nil {
		return nil, err
	}
	return &plan{leadID: leadID, event: ev, outcome: Recorded, expect: version}, nil
}
