package main

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// Routing killed (SIGKILL) after it took the pool's turn for a lead and
// reserved the rep, before LeadAssigned: the LeadQualified comes again
// and the lead goes to that rep on that turn. It once took a second
// turn: the first rep's turn was spent for nothing and its reservation
// lingered.
func TestRoutingKilledAfterItsTurnUsesThatTurn(t *testing.T) {
	w, id, first := killedAfterTurn(t, nil)
	w.start(t) // the LeadQualified is delivered again
	if got := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]); got != first {
		t.Errorf("assigned to %s, want %s, whose turn was taken", got, first)
	}
	w.settle(t)
	if turns := poolTurns(t, w, "dach"); len(turns) != 1 {
		t.Errorf("%d turns of the pool, want the one taken before the kill", len(turns))
	}
	if n := len(ofType(w.events(t, id), "LeadAssigned")); n != 1 {
		t.Errorf("%d LeadAssigned, want 1", n)
	}
	wantReserved(t, w, id, first)
}

// The same crash, but the rep whose turn it was is out of office by the
// time the LeadQualified comes again: the lead is routed afresh and the
// rep's reservation given back.
func TestRoutingKilledAfterItsTurnRoutesAfreshWhenTheRepIsAway(t *testing.T) {
	w, id, first := killedAfterTurn(t, func(c handoffv1.HandoffServiceClient, rep string) {
		away := []*eventv1.Absence{{From: timestamppb.New(time.Now().Add(-time.Hour)), Until: timestamppb.New(time.Now().Add(time.Hour))}}
		if _, err := c.SetOutOfOffice(ctxT(t), &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: rep, Absences: away}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	})
	w.start(t)
	got := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	if got == first {
		t.Fatalf("assigned to %s, who is out of office", got)
	}
	w.settle(t)
	if turns := poolTurns(t, w, "dach"); len(turns) != 2 || turns[1].GetRepId() != got {
		t.Errorf("turns %v, want %s's and then %s's", turns, first, got)
	}
	wantReserved(t, w, id, got)
}

// killedAfterTurn sets up routing (capacity 10), runs a handoff process
// that stalls once it took the pool's turn for a new DACH lead, calls
// before (if set) on its API with the turn's rep, and kills it. The turn
// and the rep's reservation are stored, the assignment not.
func killedAfterTurn(t *testing.T, before func(handoffv1.HandoffServiceClient, string)) (w *world, id, first string) {
	t.Helper()
	w = newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	s.stop()
	addr := freeAddr(t)
	child := startStalling(t, w, addr, app.AfterTurn)
	c := dial(t, addr, w.nats.TLS.Dial())
	waitServing(t, c)
	id = w.mql(t, dach(50))
	if got := child.Next(t, "stalled ", 30*time.Second); got != id {
		t.Fatalf("stalled at lead %s, want %s", got, id)
	}
	turns := poolTurns(t, w, "dach")
	if len(turns) != 1 || turns[0].GetLeadId() != id {
		t.Fatalf("turns before the kill: %v", turns)
	}
	first = turns[0].GetRepId()
	wantReserved(t, w, id, first)
	if before != nil {
		before(c, first)
	}
	child.Kill(t)
	if n := len(w.events(t, id)); n != 3 {
		t.Fatalf("the killed process wrote to the lead: %d events", n)
	}
	return w, id, first
}

// startStalling is startChild for a process that stops for good at crash
// point p, printing "stalled <lead>".
func startStalling(t testing.TB, w *world, addr string, p app.CrashPoint) *testenv.Child {
	t.Helper()
	return testenv.StartChild(t, "HANDOFF_CHILD_NATS="+w.nats.Server.URL(), "HANDOFF_CHILD_ADDR="+addr, "HANDOFF_CHILD_STALL="+string(p))
}

// poolTurns is every turn recorded on a pool, oldest first.
func poolTurns(t testing.TB, w *world, poolID string) []*eventv1.PoolTurnTaken {
	t.Helper()
	recs, err := w.store.Load(ctxT(t), adapters.PoolSubject(poolID))
	if err != nil {
		t.Fatal(err)
	}
	var out []*eventv1.PoolTurnTaken
	for _, e := range eventsOf(recs) {
		last := e.GetPoolTurnTaken()
		out = append(append(out, last.GetBefore()...), last)
	}
	return out
}

// wantReserved fails unless the reps given, and no other rep of
// routingSetup, hold a reservation for the lead.
func wantReserved(t testing.TB, w *world, leadID string, reps ...string) {
	t.Helper()
	loads, err := adapters.NewLoads(ctxT(t), w.nats.JS, "HANDOFF_LOAD", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"ann", "bob", "cat", "mia", "dan"} {
		res, _, err := loads.Get(ctxT(t), r, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res[leadID]; ok != slices.Contains(reps, r) {
			t.Errorf("%s holds a reservation for the lead: %v, want %v", r, ok, !ok)
		}
	}
}
