package app

import (
	"context"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// LogContact is one attempt by a rep to reach a lead the rep accepted.
type LogContact struct {
	LeadID, RepID, RequestID string
	Channel                  eventv1.ContactChannel
	Outcome                  eventv1.ContactOutcome
}

// LogContactAttempt appends ContactAttempted, numbered. The lead's next
// deadline is the end of the attempts window while it judges the lead
// (windowJudges: it runs, unbreached, and nobody was reached), else the
// segment's first-contact interval in the rep's working hours: the next
// touch or the conversion is due on the same clock, and the lead consumer
// puts FOLLOW_UP timers behind it (stepTimers).
//
// Errors: see command; channel and outcome must be known values.
func (a *App) LogContactAttempt(ctx context.Context, in LogContact, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	v.knownEnum("channel", in.Channel)
	v.knownEnum("outcome", in.Outcome)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ev *eventv1.Event) bool {
		c := ev.GetContactAttempted()
		return c.GetRepId() == in.RepID && c.GetChannel() == in.Channel && c.GetOutcome() == in.Outcome
	}
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindContactAttempted), sameIf(same), []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, cfg *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			p := a.policy
			due := l.accepted.GetAttemptsDueAt().AsTime()
			if !l.windowJudges(now, reaches(in.Outcome)) {
				_, due = l.slaPolicy(cfg).NextContact(cfg.RepCalendar(in.RepID), now)
			}
			p.ContactWithin = within(now, due)
			attempt := l.state.Attempts + 1
			contactBy := l.accepted.GetContactBy()
			payload := &eventv1.ContactAttempted{RepId: in.RepID, Channel: in.Channel, Outcome: in.Outcome, Attempt: int32(attempt),
				WithinSla: attempt == 1 && (contactBy == nil || !now.After(contactBy.AsTime()))}
			if err := requireOwner(l, in.RepID, "LogContact"); err != nil {
				return nil, err
			}
			ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.LogContact}, p, payload, meta, now)
			if err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}
