package app

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Every enrolment has a review date. The lead consumer turns each
// NurtureEnrolled into a timer, so a review is scheduled at least once
// whatever crashes; the timer is named after the enrolment, so scheduling
// it again replaces it. When it fires, Reconcile decides from the lead as
// it is then: an enrolment that is over (re-engaged, qualified, moved on)
// owes nothing.

// ScheduleReview schedules the review of enrolment ev (a NurtureEnrolled);
// other events schedule nothing.
func (a *App) ScheduleReview(ctx context.Context, ev *eventv1.Event) error {
	e := ev.GetNurtureEnrolled()
	if e == nil || e.GetReviewAt() == nil {
		return nil
	}
	return a.timers.Schedule(ctx, &eventv1.NurtureTimer{TimerId: ev.GetEventId(), LeadId: ev.GetLeadId(),
		ProgramId: e.GetProgramId(), ReviewAt: e.GetReviewAt()})
}

// ReviewDue acts on a fired review timer: whatever the lead owes now
// (see Reconcile). A timer that fired before its time (the server's
// schedules count whole seconds) is scheduled again.
func (a *App) ReviewDue(ctx context.Context, t *eventv1.NurtureTimer, meta envelope.Meta) error {
	if at := t.GetReviewAt().AsTime(); a.now().Before(at) {
		l, err := a.load(ctx, t.GetLeadId())
		if err != nil {
			return err
		}
		if l.state.Status == lifecycle.StatusNurturing && l.enrolled.id() == t.GetTimerId() {
			return a.timers.Schedule(ctx, proto.CloneOf(t))
		}
		return nil
	}
	_, err := a.Reconcile(ctx, t.GetLeadId(), meta)
	return err
}

// DecodeTimer decodes a fired timer.
func DecodeTimer(data []byte) (*eventv1.NurtureTimer, error) {
	t := &eventv1.NurtureTimer{}
	if err := proto.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("decode timer: %w", err)
	}
	if t.GetTimerId() == "" || t.GetLeadId() == "" || t.GetReviewAt() == nil {
		return nil, errors.New("decode timer: no timer id, lead id or review date")
	}
	return t, nil
}
