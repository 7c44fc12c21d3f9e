package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Every enrolment has a review date, and a new lead scored below the
// threshold a deadline for engagement. The lead consumer turns each
// NurtureEnrolled, and each such LeadScored (or unmerge back to NEW),
// into a timer, so it is scheduled at least once whatever crashes. A review is named after its
// enrolment, so scheduling it again replaces it; a new lead has one
// engagement slot, so each score replaces the deadline of the one
// before. When a timer fires, Reconcile decides from the lead as it is
// then: an enrolment that is over (re-engaged, qualified, moved on), or
// a lead qualified since, owes nothing.

// engageSlot is the slot of a new lead's engagement deadline.
const engageSlot = "engage"

// ScheduleTimer schedules what ev starts: the review of an enrolment (a
// NurtureEnrolled), the end of the wait for a re-engagement's score (a
// LeadReengaged, or an unmerge back to NURTURING) or for that score's
// verdict event, or the engagement deadline of a NEW lead's score with
// no verdict or of an unmerge that puts a lead back in NEW. Other events
// schedule nothing.
func (a *App) ScheduleTimer(ctx context.Context, ev *eventv1.Event) error {
	t := &eventv1.NurtureTimer{TimerId: ev.GetEventId(), LeadId: ev.GetLeadId()}
	switch e := ev.GetNurtureEnrolled(); {
	case e.GetReviewAt() != nil:
		t.ProgramId, t.ReviewAt = e.GetProgramId(), e.GetReviewAt()
		return a.timers.Schedule(ctx, t.GetTimerId(), t)
	case ev.GetLeadReengaged() != nil:
		// Its score decides what comes next; should none come, reengagedBy.
		t.ReviewAt = timestamppb.New(lifecycle.FromProto(ev.GetLifecycle()).Deadline.Add(reengagedGrace))
		return a.timers.Schedule(ctx, t.GetTimerId(), t)
	case ev.GetLeadUnmerged() != nil && lifecycle.FromProto(ev.GetLifecycle()).Status == lifecycle.StatusNurturing:
		// Given back in nurture: a re-engagement the merge left unscored
		// waits again (reengagedBy); its own timer fired while merged.
		t.ReviewAt = timestamppb.New(a.afterUnmerge(ev).Add(reengagedGrace))
		return a.timers.Schedule(ctx, t.GetTimerId(), t)
	case ev.GetLeadScored() != nil && VerdictFollows(ev.GetLeadScored(), lifecycle.StatusNurturing) &&
		lifecycle.FromProto(ev.GetLifecycle()).Status == lifecycle.StatusNurturing:
		// A re-engagement's score with a verdict: should its verdict event
		// never come, nurture takes the lead back an hour on. In the
		// re-engagement's slot (the score's cause), replacing its wait.
		t.TimerId = ev.GetCausationId()
		t.ReviewAt = timestamppb.New(ev.GetRecordedAt().AsTime().Add(unscoredGrace))
		return a.timers.Schedule(ctx, t.GetTimerId(), t)
	case waitsForEngagement(ev),
		ev.GetLeadUnmerged() != nil && lifecycle.FromProto(ev.GetLifecycle()).Status == lifecycle.StatusNew:
		t.ReviewAt = timestamppb.New(lifecycle.FromProto(ev.GetLifecycle()).Deadline)
		return a.timers.Schedule(ctx, engageSlot, t)
	}
	return nil
}

// ReviewDue acts on a fired timer: whatever the lead owes now (see
// Reconcile). A review that fired before its time (the server's schedules
// count whole seconds) is scheduled again if it still stands. So is the
// engagement slot while the lead is NEW before its deadline: the timer
// may have come early, or from an older score's deadline (a redelivered
// LeadScored after a newer one schedules its own), and at the lead's
// deadline nothing else would fire.
func (a *App) ReviewDue(ctx context.Context, t *eventv1.NurtureTimer, meta envelope.Meta) error {
	l, err := a.load(ctx, t.GetLeadId())
	if err != nil {
		return err
	}
	if l.version == 0 {
		return nil // no such lead: the timer has nothing to wake
	}
	now := a.now()
	// again schedules t for due once more: at due when the lead's due
	// moved past the timer's; else it fired early by this clock, behind
	// the server's, and goes again as far past due by the server's clock,
	// about when this one shows due (at due it would fire at once, round
	// after round, as long as the clocks differ).
	again := func(slot string, due time.Time) error {
		at := due
		if !due.After(t.GetReviewAt().AsTime()) {
			at = due.Add(due.Sub(now))
		}
		next := proto.CloneOf(t)
		next.ReviewAt = timestamppb.New(at)
		return a.timers.Schedule(ctx, slot, next)
	}
	switch id := t.GetTimerId(); {
	case l.state.Status == lifecycle.StatusNew && now.Before(l.state.Deadline):
		return again(engageSlot, l.state.Deadline)
	case l.state.Status == lifecycle.StatusNew && len(l.unscored) > 0 && now.Before(l.unscoredBy()):
		return again(engageSlot, l.unscoredBy()) // its fact's score decides first
	case l.state.Status == lifecycle.StatusNew && l.verdictOwed(now):
		return again(engageSlot, l.verdictBy()) // a later score's verdict decides
	case l.state.Status == lifecycle.StatusNew:
		// Due by this clock, whatever the timer's date: one sent again as
		// far past due as it came early is still ahead of it here.
	case l.state.Status == lifecycle.StatusNurturing && l.enrolled.id() == id:
		if due := l.enrolled.ev.GetNurtureEnrolled().GetReviewAt().AsTime(); now.Before(due) {
			return again(id, due)
		}
	case l.state.Status == lifecycle.StatusNurturing && l.reengaged.seq > l.enrolled.seq && l.reengagedScore.seq == 0 &&
		(id == l.reengaged.id() || id == l.unmerged.id()):
		if due := a.reengagedBy(l); now.Before(due) {
			return again(id, due)
		}
	case l.state.Status == lifecycle.StatusNurturing && l.reengaged.seq > l.enrolled.seq && (id == l.reengaged.id() || id == l.unmerged.id()) &&
		VerdictFollows(l.reengagedScore.ev.GetLeadScored(), lifecycle.StatusNurturing):
		if due := l.reengagedVerdictBy(); now.Before(due) {
			return again(id, due) // its verdict event is awaited that long
		}
	case now.Before(t.GetReviewAt().AsTime()):
		return nil
	}
	w, err := a.reconcile(ctx, t.GetLeadId(), 0, l, meta)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || len(w) > 0 || l.state.Status != lifecycle.StatusNew {
		return err
	}
	// Nothing written for a new lead: a fact stored meanwhile (the
	// recycle lost its race, and the lead read again waits for the fact's
	// score) puts it off, and this timer is used up. That score schedules
	// the next, unless it never lands: wake up for it as above.
	if l, err = a.load(ctx, t.GetLeadId()); err != nil {
		return err
	}
	switch now = a.now(); {
	case l.state.Status == lifecycle.StatusNew && len(l.unscored) > 0 && now.Before(l.unscoredBy()):
		return again(engageSlot, l.unscoredBy())
	case l.state.Status == lifecycle.StatusNew && l.verdictOwed(now):
		return again(engageSlot, l.verdictBy())
	}
	return nil
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
