package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Interest that comes after nurture recycled a lead and before it enrols
// it is judged by the program the entry rules choose: counted, it
// re-engages the lead as soon as it is enrolled, and only once (not
// again after the re-score sends it back to its program); not counted
// (a webinar, in data-repair), it leaves the lead nurtured.
func TestInterestBeforeTheEnrolmentIsHeard(t *testing.T) {
	w := newWorld(t)
	counted, notCounted := uuid.NewString(), uuid.NewString()
	acts := map[string]chan *eventv1.Event{counted: make(chan *eventv1.Event, 1), notCounted: make(chan *eventv1.Event, 1)}
	s := w.start(t, func(c *Config) {
		c.afterAppend = func(ev *eventv1.Event) {
			ch, ok := acts[ev.GetLeadId()]
			if !ok || ev.GetLeadRecycled() == nil {
				return
			}
			// Before nurture enrols the lead: its append races this.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			act, err := w.appendLead(ctx, lifecycle.DefaultPolicy(), ev.GetLeadId(), lifecycle.Command{Name: lifecycle.RecordActivity},
				&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar}, intakeActor)
			if err != nil {
				t.Error(err)
			}
			select {
			case ch <- act:
			default:
			}
		}
	})
	putWebinars(t, s.client)
	w.accepted(t, counted, "smb", 30)
	w.accepted(t, notCounted, "smb", 30)
	w.reject(t, counted, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.reject(t, notCounted, eventv1.RejectReason_REJECT_REASON_BAD_DATA, "smb")
	gapAct := func(t *testing.T, l string) *eventv1.Event {
		t.Helper()
		select {
		case act := <-acts[l]:
			return act
		case <-time.After(20 * time.Second):
			t.Fatalf("nurture did not recycle lead %s", l)
			return nil
		}
	}

	t.Run("counted by its program", func(t *testing.T) {
		act := gapAct(t, counted)
		evs := w.waitFor(t, counted, "LeadReengaged", 1)
		var path []string
		for _, ev := range evs[len(evs)-4:] {
			path = append(path, ev.GetEventType())
		}
		if want := []string{"LeadRecycled", "ActivityRecorded", "NurtureEnrolled", "LeadReengaged"}; !slices.Equal(path, want) {
			t.Fatalf("path %v, want %v", path, want)
		}
		re := last(evs)
		if re.GetCausationId() != act.GetEventId() || re.GetLeadReengaged().GetProgramId() != "webinars" ||
			re.GetLeadReengaged().GetActivityType() != webinar || re.GetLeadReengaged().GetActivityId() != act.GetActivityRecorded().GetActivityId() {
			t.Fatalf("re-engagement %v, want one in webinars caused by %s", re, act.GetEventId())
		}
		// Re-scored low: back to the program, and the activity the score saw
		// re-engages nobody again.
		w.scoreFor(t, counted, re, 35, false)
		w.waitFor(t, counted, "NurtureEnrolled", 2)
		w.settle(t, group)
		if evs := w.events(t, counted); len(ofType(evs, "LeadReengaged")) != 1 || len(ofType(evs, "NurtureEnrolled")) != 2 {
			t.Fatalf("judged twice: %v", types(evs))
		}
	})
	t.Run("not counted by its program", func(t *testing.T) {
		gapAct(t, notCounted)
		evs := w.nurtured(t, notCounted)
		if p := ofType(evs, "NurtureEnrolled")[0].GetNurtureEnrolled().GetProgramId(); p != "data-repair" {
			t.Fatalf("enrolled in %s, want data-repair", p)
		}
		w.settle(t, group)
		if evs := w.events(t, notCounted); len(ofType(evs, "LeadReengaged")) != 0 {
			t.Fatalf("a webinar re-engaged a lead in data-repair: %v", types(evs))
		}
	})
}

// A nurture process is killed (SIGKILL) after it enrolled a lead whose
// interest came between its recycle and the enrolment, and before it
// re-engaged it. The next process re-engages it, once.
func TestKillBetweenEnrolmentAndReengagement(t *testing.T) {
	w := newWorld(t)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	// Recycled as handoff does, with no nurture running; a webinar (the
	// default program counts it) follows.
	w.write(t, l, lifecycle.Command{Name: lifecycle.Recycle, Reason: "attempts exhausted"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED, Note: "3 contact attempts by ann without reaching the lead"})
	act := w.activity(t, l, webinar)

	child := w.child(t, "NurtureEnrolled")
	if got := stalledAt(t, child); got != l {
		t.Fatalf("stalled at lead %s, want %s", got, l)
	}
	child.Kill(t)
	if evs := w.events(t, l); len(ofType(evs, "NurtureEnrolled")) != 1 || len(ofType(evs, "LeadReengaged")) != 0 {
		t.Fatalf("after the kill: %v", types(evs))
	}

	w.start(t)
	evs := w.waitFor(t, l, "LeadReengaged", 1)
	if re := ofType(evs, "LeadReengaged")[0]; re.GetCausationId() != act.GetEventId() {
		t.Fatalf("re-engagement %v, want one caused by %s", re, act.GetEventId())
	}
	w.settle(t, group)
	if evs := w.events(t, l); len(ofType(evs, "LeadReengaged")) != 1 || len(ofType(evs, "NurtureEnrolled")) != 1 {
		t.Fatalf("written twice: %v", types(evs))
	}
}
