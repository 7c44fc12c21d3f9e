package app

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// AcceptLead is a rep taking a lead the rep owns.
type AcceptLead struct {
	LeadID, RepID, RequestID string
}

// AcceptLead appends LeadAccepted, with the first-contact and attempts
// deadlines of the lead's SLA in the rep's working hours. Only the owner
// may accept: after a reassignment the former owner is refused.
//
// Errors: see command.
func (a *App) AcceptLead(ctx context.Context, in AcceptLead, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ev *eventv1.Event) bool { return ev.GetLeadAccepted().GetRepId() == in.RepID }
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindAccepted), sameIf(same), []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, cfg *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			policy := l.slaPolicy(cfg)
			steps := policy.Contact(cfg.RepCalendar(in.RepID), now)
			p := a.policy
			p.ContactWithin = within(now, steps.ContactDue)
			payload := &eventv1.LeadAccepted{
				RepId: in.RepID, ContactBy: timestamppb.New(steps.ContactDue), AcceptBy: pbTime(l.acceptBy),
				WithinSla: l.acceptBy.IsZero() || !now.After(l.acceptBy), ContactWarnAt: pbTime(steps.ContactWarn),
				AttemptsDueAt: pbTime(steps.AttemptsDue), MinAttempts: int32(policy.MinAttempts), AttemptsWarnAt: pbTime(steps.AttemptsWarn),
				Segment: l.segment,
			}
			if err := requireOwner(l, in.RepID, "Accept"); err != nil {
				return nil, err
			}
			if l.state.Status != lifecycle.StatusAssigned && l.ownedBy(in.RepID) && l.acceptedID != "" {
				// "lead is not assigned" reads as if it was taken away.
				return nil, &lifecycle.RefusedError{Command: lifecycle.Accept, Status: l.state.Status, Reason: fmt.Sprintf(
					"rep %s accepted lead %s already (event %s); a retry sends the first request's request_id", in.RepID, l.id, l.acceptedID)}
			}
			ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Accept}, p, payload, meta, now)
			if err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}
