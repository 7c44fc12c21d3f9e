package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// absence sets a rep's out-of-office periods: from, until pairs.
func absence(t *testing.T, c handoffv1.HandoffServiceClient, rep string, times ...time.Time) {
	t.Helper()
	var abs []*eventv1.Absence
	for i := 0; i+1 < len(times); i += 2 {
		abs = append(abs, &eventv1.Absence{From: timestamppb.New(times[i]), Until: timestamppb.New(times[i+1])})
	}
	if _, err := c.SetOutOfOffice(ctxT(t), &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: rep, Absences: abs}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
}

// outOfOffice returns the lead's LeadReassigned events caused by an
// absence, failing on any breach or warning: none was due.
func outOfOffice(t *testing.T, evs []*eventv1.Event) []*eventv1.LeadReassigned {
	t.Helper()
	if n := len(ofType(evs, "SLABreached")) + len(ofType(evs, "SLAWarned")); n != 0 {
		t.Errorf("%d SLA warnings and breaches, want none", n)
	}
	var out []*eventv1.LeadReassigned
	for _, ev := range ofType(evs, "LeadReassigned") {
		r := ev.GetLeadReassigned()
		if r.GetCause() != eventv1.ReassignCause_REASSIGN_CAUSE_OUT_OF_OFFICE {
			t.Errorf("reassigned by %v, want out of office", r.GetCause())
		}
		out = append(out, r)
	}
	return out
}

// A rep who goes out of office (recorded now, starting now) hands on the
// leads they have not accepted, at once, to the pool's next rep, who gets
// a fresh acceptance deadline; a lead they accepted stays theirs. The
// brief says why the lead changed hands.
func TestAbsenceHandsOnUnacceptedLeads(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, time.Hour, time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	ctx := ctxT(t)

	waiting := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, waiting, "LeadAssigned", 1)[0])
	var kept string
	for kept == "" {
		id := w.mql(t, dach(50))
		if ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]) == owner {
			kept = id
		}
	}
	if _, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: kept, RepId: owner, RequestId: "accept-kept"}); err != nil {
		t.Fatal(err)
	}
	w.settle(t)

	away := time.Now()
	absence(t, s.client, owner, away.Add(-time.Minute), away.Add(24*time.Hour))
	w.waitFor(t, waiting, "LeadReassigned", 1)
	time.Sleep(2 * time.Second) // a second hand-over would show now
	evs := w.events(t, waiting)
	moved := outOfOffice(t, evs)
	if len(moved) != 1 {
		t.Fatalf("%d reassignments, want 1", len(moved))
	}
	r := moved[0]
	if r.GetFrom().GetId() != owner || r.GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_REP || r.GetTo().GetId() == owner ||
		r.GetDecision().GetPoolId() != "dach" {
		t.Fatalf("handed from %v to %v (pool %q), want the next rep of pool dach", r.GetFrom(), r.GetTo(), r.GetDecision().GetPoolId())
	}
	if due := r.GetAcceptBy().AsTime(); due.Before(away.Add(59 * time.Minute)) {
		t.Errorf("new acceptance deadline %v, want an hour from the hand-over", due)
	}
	if st := w.state(t, waiting); st.Status != lifecycle.StatusAssigned || st.Owner.ID != r.GetTo().GetId() {
		t.Errorf("after the hand-over: %+v", st)
	}
	if st := w.state(t, kept); st.Status != lifecycle.StatusAccepted || st.Owner.ID != owner {
		t.Errorf("the accepted lead: %+v, want it still %s's", st, owner)
	}

	brief, err := s.client.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: waiting})
	if err != nil {
		t.Fatal(err)
	}
	var hows []string
	for _, o := range brief.GetBrief().GetOwners() {
		hows = append(hows, o.GetHow()+"/"+o.GetEnded())
	}
	if len(hows) != 2 || hows[0] != "routed/out of office" || hows[1] != "out of office/" {
		t.Errorf("brief's owners %v, want routed, then handed on out of office", hows)
	}
}

// An absence recorded ahead, starting before a lead's acceptance
// deadline, hands the lead on when it starts, not before, and not at all
// once withdrawn: whether the lead came before or after the absence was
// recorded. With the whole pool away, to the manager's queue.
func TestAbsenceStartingBeforeTheDeadline(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, time.Hour, time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)

	pool := []string{"ann", "bob", "cat"}
	start := time.Now().Add(5 * time.Second)
	for _, rep := range pool {
		absence(t, s.client, rep, start, start.Add(24*time.Hour))
	}
	first := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, first, "LeadAssigned", 1)[0])
	var early, other string
	for i := 0; other == "" || other == owner; i++ {
		if i == 5 {
			t.Fatalf("five leads routed to %s alone", owner)
		}
		early = w.mql(t, dach(50))
		other = ownerOf(w.waitFor(t, early, "LeadAssigned", 1)[0])
	}
	absence(t, s.client, owner) // withdrawn before it starts
	reassigned := w.waitFor(t, early, "LeadReassigned", 1)[0]
	if at := reassigned.GetRecordedAt().AsTime(); at.Before(start) {
		t.Errorf("handed on at %v, before the absence started at %v", at, start)
	}
	if r := reassigned.GetLeadReassigned(); r.GetFrom().GetId() != other || r.GetTo().GetId() != owner {
		t.Errorf("handed on from %v to %v, want from %s to %s, the one rep of the pool in", r.GetFrom(), r.GetTo(), other, owner)
	}
	time.Sleep(time.Until(start) + 2*time.Second)
	if evs := w.events(t, first); len(ofType(evs, "LeadReassigned")) != 0 {
		t.Fatalf("handed on from %s, whose absence was withdrawn: %v", owner, last(evs))
	}

	// The rest of the pool is away now; the owner will be soon.
	second := w.mql(t, dach(50))
	if got := ownerOf(w.waitFor(t, second, "LeadAssigned", 1)[0]); got != owner {
		t.Fatalf("routed to %s, want %s, the one rep of the pool in", got, owner)
	}
	start = time.Now().Add(3 * time.Second)
	absence(t, s.client, owner, start, start.Add(24*time.Hour))
	for _, id := range []string{first, second} {
		reassigned = w.waitFor(t, id, "LeadReassigned", 1)[0]
		if at := reassigned.GetRecordedAt().AsTime(); at.Before(start) {
			t.Errorf("handed on at %v, before the absence started at %v", at, start)
		}
	}
	time.Sleep(2 * time.Second) // a second hand-over would show now
	for _, id := range []string{first, second} {
		moved := outOfOffice(t, w.events(t, id))
		if len(moved) != 1 || moved[0].GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_QUEUE || moved[0].GetTo().GetId() != "manager:emea" {
			t.Fatalf("handed on %v, want once, to manager mia's queue (the pool is away)", moved)
		}
	}
}
