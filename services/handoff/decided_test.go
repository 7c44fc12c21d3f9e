package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// failingOnce is the real lead store whose first append fails as a
// server away fails it.
type failingOnce struct {
	*adapters.Leads
	failed atomic.Bool
}

func (f *failingOnce) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	if f.failed.CompareAndSwap(false, true) {
		return 0, nats.ErrNoResponders
	}
	return f.Leads.Append(ctx, leadID, expected, events...)
}

// A routing decision tried again in the same process after its write
// failed (the server away for longer than a reservation's grace) counts
// the lead against its rep again: the rep's reservation was pruned
// meanwhile and the slot given to another lead, so the lead goes where
// there is room, not over the rep's capacity.
func TestADecisionTriedAgainCountsItsLeadAgain(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	s.stop()
	us := func() *eventv1.Profile {
		return &eventv1.Profile{Country: "US", Industry: "software", EmailDomain: "x" + time.Now().Format("150405.000000") + ".example"}
	}
	l, m := w.mql(t, us()), w.mql(t, us())

	a := w.app(t, &failingOnce{Leads: adapters.NewLeads(w.store)})
	ql := w.lastEvent(t, l)
	if err := a.RouteQualified(ctxT(t), l, ql.Seq, ql.Event, false, envelope.Meta{}); err == nil {
		t.Fatal("the first try's write did not fail")
	}
	// A minute and more later: dan's reservation for l is pruned, and m
	// takes his one slot.
	later := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return time.Now().Add(2 * time.Minute) }))
	qm := w.lastEvent(t, m)
	if err := later.RouteQualified(ctxT(t), m, qm.Seq, qm.Event, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if got := ofType(w.events(t, m), "LeadAssigned"); len(got) != 1 || ownerOf(got[0]) != "dan" {
		t.Fatalf("m: %v, want it assigned to dan", got)
	}
	if err := a.RouteQualified(ctxT(t), l, ql.Seq, ql.Event, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if got := ofType(w.events(t, l), "LeadAssigned"); len(got) != 0 {
		t.Fatalf("l: %v, want it queued, dan being full with m", got)
	}
	if got := ofType(w.events(t, l), "LeadQueued"); len(got) != 1 {
		t.Fatalf("l: %d LeadQueued, want 1", len(got))
	}
}

// A decision tried again in the same process after the routing data
// changed (its rep made inactive meanwhile) is decided afresh: the lead
// does not go to a rep who can no longer take it.
func TestADecisionTriedAgainAfterItsRepLeftIsDecidedAfresh(t *testing.T) {
	evs := triedAgainAfter(t, "left.example", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rep{
		Rep: &eventv1.Rep{RepId: "dan", TeamId: "us", Capacity: 10, Active: false}}})
	if got := ofType(evs, "LeadAssigned"); len(got) != 0 {
		t.Fatalf("%v, want the lead queued, dan (the US pool's only rep) inactive now", got)
	}
	if got := ofType(evs, "LeadQueued"); len(got) != 1 {
		t.Fatalf("%d LeadQueued, want 1", len(got))
	}
}

// The same for an account's owner: once the account no longer matches,
// the lead tried again goes by the rules, not as the account's.
func TestADecisionTriedAgainAfterItsAccountWentIsDecidedAfresh(t *testing.T) {
	evs := triedAgainAfter(t, "acme.example", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Account{
		Account: &eventv1.Account{AccountId: "acme", Name: "ACME GmbH", Domains: []string{"acme-group.example"}, OwnerRepId: "dan"}}})
	got := ofType(evs, "LeadAssigned")
	if len(got) != 1 || got[0].GetLeadAssigned().GetRule() != "us-software" || got[0].GetLeadAssigned().GetDecision().GetAccountId() != "" {
		t.Fatalf("%v, want the lead assigned by rule us-software, no account", got)
	}
}

// triedAgainAfter routes a US software lead of domain in a process whose
// first write fails, makes change to the routing data through that
// process, routes the lead again there (a redelivery) and returns the
// lead's events.
func triedAgainAfter(t *testing.T, domain string, change *eventv1.RoutingChanged) []*eventv1.Event {
	t.Helper()
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	s.stop()
	l := w.mql(t, &eventv1.Profile{Country: "US", Industry: "software", EmailDomain: domain})
	a := w.app(t, &failingOnce{Leads: adapters.NewLeads(w.store)})
	ql := w.lastEvent(t, l)
	if err := a.RouteQualified(ctxT(t), l, ql.Seq, ql.Event, false, envelope.Meta{}); err == nil {
		t.Fatal("the first try's write did not fail")
	}
	field := "rep"
	if change.GetAccount() != nil {
		field = "account"
	}
	if _, err := a.ChangeRouting(ctxT(t), app.ChangeRouting{Field: field, By: ops, Change: change}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := a.RouteQualified(ctxT(t), l, ql.Seq, ql.Event, true, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	return w.events(t, l)
}

// failingPutOnce is the reservations bucket whose first write fails, as
// a timeout does.
type failingPutOnce struct {
	app.Loads
	failed atomic.Bool
}

func (f *failingPutOnce) Put(ctx context.Context, repID string, r app.Reservations, rev uint64) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("timeout")
	}
	return f.Loads.Put(ctx, repID, r, rev)
}

// A routing decision whose turn was taken but whose reservation failed
// (its write timed out) is tried again in the same process: the turn it
// took is the lead's, not a second one that passes its rep over.
func TestADecisionTriedAgainUsesTheTurnItTook(t *testing.T) {
	w := newWorld(t)
	id := w.mqlUnrouted(t)
	loads, err := adapters.NewLoads(ctxT(t), w.nats.JS, "HANDOFF_LOAD", 1)
	if err != nil {
		t.Fatal(err)
	}
	a := app.New(adapters.NewLeads(w.store), adapters.NewStore(w.store, w.nats.JS), &failingPutOnce{Loads: loads},
		adapters.NewTimers(w.nats.JS, time.Hour))
	q := w.lastEvent(t, id)
	if err := a.RouteQualified(ctxT(t), id, q.Seq, q.Event, false, envelope.Meta{}); err == nil {
		t.Fatal("the first try's reservation did not fail")
	}
	if err := a.RouteQualified(ctxT(t), id, q.Seq, q.Event, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	pool, err := w.store.Load(ctxT(t), adapters.PoolSubject("dach"))
	if err != nil {
		t.Fatal(err)
	}
	var reps []string
	for _, e := range eventsOf(pool) {
		for _, tt := range append(e.GetPoolTurnTaken().GetBefore(), e.GetPoolTurnTaken()) {
			reps = append(reps, tt.GetRepId())
		}
	}
	got := ofType(w.events(t, id), "LeadAssigned")
	if len(reps) != 1 || len(got) != 1 || ownerOf(got[0]) != reps[0] {
		t.Fatalf("turns %v, LeadAssigned %v: want one turn, and the lead to its rep", reps, got)
	}
}
