package main

import (
	"testing"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// What a merged lead's person sent while merged scores the survivor only
// until the unmerge gives it back: after it the survivor is scored on its
// own facts, by the cached fold that held them as by a fresh read.
func TestUnmergeTakesBackTheAbsorbedLeadsFacts(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	m := webinarModel(100)
	m.Fit = []scoring.FitRule{{ID: "vp", Description: "VP", Points: 40,
		When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}}
	activate(t, s.client, m)

	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.capture(t, absorbed, vpProfile("absorbed.example"))
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor},
		&eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"})
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"})
	// The absorbed lead's person, a VP, at a form and a webinar: 70.
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadResubmitted{SealedContact: []byte("sealed"), Profile: vpProfile("absorbed.example"), MergedFrom: absorbed})
	via := w.write(t, survivor, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar, MergedFrom: absorbed})
	w.settle(t)
	if sc := causedBy(w.events(t, survivor), via.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 70 {
		t.Fatalf("while merged, the survivor's score: %v, want 70", sc)
	}

	prior := lifecycle.FromProto(w.events(t, absorbed)[0].GetLifecycle())
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "different people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"})
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"})
	own := w.activity(t, survivor, webinar)
	w.settle(t)
	evs := w.events(t, survivor)
	if sc := causedBy(evs, own.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 30 {
		t.Fatalf("after the unmerge, from the cached fold: %v, want 30 (its own webinar)", sc)
	}

	// A fresh process reads the survivor's whole history.
	s.stop()
	w.start(t)
	again := w.activity(t, survivor, webinar)
	w.settle(t)
	evs = w.events(t, survivor)
	if sc := causedBy(evs, again.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 {
		t.Fatalf("after the unmerge, from a read: %v, want 60 (its own two webinars)", sc)
	}
	if q := ofType(evs, "LeadQualified"); len(q) != 0 {
		t.Fatalf("qualified on the absorbed lead's facts: %v", q)
	}
}

// A nurtured lead merged after its re-engagement and before that
// re-engagement was scored (the score is refused while it is merged)
// gets that score when an unmerge gives it back in nurture: nurture
// waits for it, and nothing else would give it.
func TestAnUnmergeAnswersTheReengagementItsMergeLeftUnscored(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activate(t, s.client, webinarModel(50))
	lead, survivor := uuid.NewString(), uuid.NewString()
	w.nurture(t, lead)
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.settle(t)
	s.stop()

	w.activity(t, lead, webinar)
	w.activity(t, lead, webinar) // 60: enough, through the re-engagement only
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	prior := lifecycle.FromProto(re.GetLifecycle())
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead, Reason: "one person"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.start(t)
	w.settle(t)
	if sc := causedBy(w.events(t, lead), re.GetEventId()); len(sc) != 0 {
		t.Fatalf("scored while merged: %v", sc)
	}

	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead, Reason: "two people"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	w.settle(t)
	evs := w.events(t, lead)
	if sc := causedBy(evs, re.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 {
		t.Fatalf("the re-engagement's score after the unmerge: %v, want one of 60", sc)
	}
	if q := ofType(evs, "LeadQualified"); len(q) != 1 {
		t.Fatalf("%d LeadQualified, want the re-engagement's", len(q))
	}
}
