package app

import (
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// An MQL waits for handoff whether routing still holds it or it sits in a
// named fallback queue: with handoff stopped, both are stalled, and a lead
// waiting for someone else is not.
func TestJudgeStalledQueues(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	stopped := map[lifecycle.Owner]string{lifecycle.QueueRouting: "handoff"}
	for _, tc := range []struct {
		state lifecycle.State
		want  bool
	}{
		{lifecycle.State{Status: lifecycle.StatusMQL, Owner: lifecycle.QueueRouting, Deadline: now.Add(time.Hour)}, true},
		{lifecycle.State{Status: lifecycle.StatusMQL, Owner: lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "fallback-emea"}, Deadline: now.Add(time.Hour)}, true},
		{lifecycle.State{Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification, Deadline: now.Add(time.Hour)}, false},
		{lifecycle.State{Status: lifecycle.StatusAssigned, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}, Deadline: now.Add(time.Hour)}, false},
	} {
		h := &Head{LeadID: "0195f3a0-0000-7000-8000-000000000001", Seq: 9, At: now.Add(-time.Minute), Type: "LeadQueued", State: tc.state}
		got, lost := judge(h, nil, nil, stopped, LostQuery{AsOf: now})
		if lost != tc.want || (lost && got.Reason != LostStalled) {
			t.Errorf("%v: lost %v (%+v), want stalled %v", tc.state, lost, got, tc.want)
		}
	}
}

// A lead whose last event carries no lifecycle is listed, as of an
// unknown status: every lead event must carry one.
func TestJudgeListsALeadWithoutLifecycle(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	h := &Head{LeadID: "0195f3a0-0000-7000-8000-000000000001", Seq: 9, At: now.Add(-time.Hour), Type: "LeadAccepted"}
	got, lost := judge(h, nil, nil, nil, LostQuery{AsOf: now})
	if !lost || got.Reason != LostUnknownStatus {
		t.Fatalf("lost %v (%+v), want listed as of an unknown status", lost, got)
	}
}

// A lead parked by the projector misses nothing of its journey, only
// the read model's view of it; one parked by a business group misses its
// next step.
func TestAParkedLeadsStepIsItsGroups(t *testing.T) {
	h := &Head{LeadID: "0195f3a0-0000-7000-8000-000000000001", Type: "LeadCaptured",
		State: lifecycle.State{Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification}}
	if got := parkedStep("projector", h); !strings.Contains(got, "read model") {
		t.Errorf("parked by the projector: %q, want the read model named", got)
	}
	if got, want := parkedStep("qualification", h), nextStep(h); got != want || strings.Contains(got, "read model") {
		t.Errorf("parked by qualification: %q, want its next step %q", got, want)
	}
	// A re-score's or intake's timers' dead letter holds what that group
	// does, not the journey that the live groups carry on.
	if got := parkedStep("rescore-v2", h); !strings.Contains(got, "re-score") || got == nextStep(h) {
		t.Errorf("parked by a re-score: %q, want the re-score named", got)
	}
	if got := parkedStep("intake-timers", h); !strings.Contains(got, "erasure or unmerge") {
		t.Errorf("parked by intake's timers: %q, want the erasure or unmerge named", got)
	}
}
