package app

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// A new lead past its deadline waits for the score of each fact (the
// scorer scores them in order; a score caused by an earlier fact may be
// stored after a later one), and no longer than unscoredGrace past it.
func TestRecycleWaitsForTheLatestFactsScore(t *testing.T) {
	deadline := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := newLead("0195f3a0-0000-7000-8000-000000000002")
	seq := uint64(0)
	add := func(id, cause, typ string, p *eventv1.Event) {
		seq++
		p.LeadId, p.EventId, p.CausationId, p.EventType = l.id, id, cause, typ
		p.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW, Deadline: timestamppb.New(deadline)}
		l.apply(eventstore.Record{Seq: seq, Event: p})
	}
	activity := func(id string) {
		add(id, "", "ActivityRecorded", &eventv1.Event{Payload: &eventv1.Event_ActivityRecorded{ActivityRecorded: &eventv1.ActivityRecorded{}}})
	}
	score := func(id, cause string) {
		add(id, cause, "LeadScored", &eventv1.Event{Payload: &eventv1.Event_LeadScored{LeadScored: &eventv1.LeadScored{Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE}}})
	}
	add("c", "", "LeadCaptured", &eventv1.Event{Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{}}})
	score("s0", "c")
	past := deadline.Add(time.Minute)
	if !l.recycleDue(past) {
		t.Fatal("scored, past its deadline: not due")
	}
	activity("f0")
	activity("f1")
	score("s1", "f0") // stored after f1, caused by f0
	if l.recycleDue(past) {
		t.Fatal("due with f1 not scored yet")
	}
	if !l.recycleDue(deadline.Add(unscoredGrace)) {
		t.Fatal("not due once f1 waited unscoredGrace past the deadline")
	}
	score("s2", "f1")
	if !l.recycleDue(past) {
		t.Fatal("every fact scored, past its deadline: not due")
	}
	activity("f2")
	score("r", "activation") // a re-score under a new version saw f2
	if !l.recycleDue(past) {
		t.Fatal("a re-score covers the facts before it: not due")
	}
	// A merge that brings the absorbed lead's facts waits for its score
	// as a fact does (merged, the lead may qualify); one without none.
	merged := func(id string, facts bool) {
		m := &eventv1.LeadMerged{SurvivorLeadId: l.id, AbsorbedLeadId: "0195f3a0-0000-7000-8000-000000000003"}
		if facts {
			m.AbsorbedProfile = &eventv1.Profile{}
		}
		add(id, "", "LeadMerged", &eventv1.Event{LeadId: l.id, Payload: &eventv1.Event_LeadMerged{LeadMerged: m}})
	}
	merged("m0", false)
	if !l.recycleDue(past) {
		t.Fatal("a merge that carried no facts held the recycle")
	}
	merged("m1", true)
	if l.recycleDue(past) {
		t.Fatal("due with the merge's facts not scored yet")
	}
	score("s3", "m1")
	if !l.recycleDue(past) {
		t.Fatal("the merge scored, past its deadline: not due")
	}
}
