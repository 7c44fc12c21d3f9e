package main

import (
	"testing"
	"time"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// A nurtured lead's activities are scored, but only nurture's
// LeadReengaged may make it an MQL again: its program decides which
// activities open the way back, and the journey must show the
// re-engagement before the qualification.
func TestNurturedLeadQualifiesOnlyThroughReengagement(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activate(t, s.client, scoring.Model{Description: "webinars qualify", Threshold: 50,
		Engagement: []scoring.EngagementRule{{ID: "webinar", Description: "Attended a webinar", Activity: webinar,
			Points: 30, Cap: 60, HalfLife: 30 * 24 * time.Hour}}})

	lead := uuid.NewString()
	w.capture(t, lead, &eventv1.Profile{Country: "DE"})
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "not now", NotNow: true},
		&eventv1.LeadDisqualified{RuleId: "budget", Reason: "not now", NotNow: true})
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "warm-up"},
		Due: time.Now().Add(30 * 24 * time.Hour)}, &eventv1.NurtureEnrolled{ProgramId: "warm-up"})
	w.activity(t, lead, webinar)
	second := w.activity(t, lead, webinar)
	w.settle(t)

	evs := w.events(t, lead)
	if q := ofType(evs, "LeadQualified"); len(q) != 0 {
		t.Fatalf("a nurtured lead qualified by an activity: %v", q)
	}
	var scored *eventv1.Event
	for _, ev := range ofType(evs, "LeadScored") {
		if ev.GetCausationId() == second.GetEventId() {
			scored = ev
		}
	}
	if sc := scored.GetLeadScored(); sc.GetTotal() != 60 || sc.GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_NONE {
		t.Fatalf("the second webinar's score: %v, want 60 with no verdict", sc)
	}
	if st := last(evs).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
		t.Fatalf("status %s, want NURTURING", st)
	}

	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	eventually(t, 20*time.Second, func() bool { return len(ofType(w.events(t, lead), "LeadQualified")) == 1 },
		"the re-engaged lead was not qualified")
	evs = w.events(t, lead)
	q := ofType(evs, "LeadQualified")[0]
	var cause *eventv1.Event
	for _, ev := range evs {
		if ev.GetEventId() == q.GetCausationId() {
			cause = ev
		}
	}
	if cause.GetEventType() != "LeadScored" || cause.GetCausationId() != re.GetEventId() || cause.GetLeadScored().GetTotal() != 60 {
		t.Fatalf("LeadQualified rests on %v, want the score of the LeadReengaged %s", cause, re.GetEventId())
	}
	if st := last(evs).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("status %s, want MQL", st)
	}
}
