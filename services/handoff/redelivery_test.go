package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

// A LeadQualified comes back to a replica whose fold of the lead ended
// just before it, after another replica routed the lead (a hand-over, an
// ack lost): the fold does not show the assignment, and trusting it would
// take a second turn of the pool before the lead's version check refused
// the assignment. The redelivery is routed on the lead as stored: no turn.
func TestRedeliveredQualificationTakesNoSecondTurn(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 100)
	s.stop() // the two replicas below get the lead's events by hand
	id := w.mql(t, dach(50))
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(id))
	if err != nil || len(recs) != 3 {
		t.Fatalf("the MQL's events: %d, %v", len(recs), err)
	}
	a, b := w.replica(t), w.replica(t)
	// b saw the capture and the score, then its partition moved to a.
	for _, r := range recs[:2] {
		w.deliver(t, b, r.Seq, 1)
	}
	w.deliver(t, a, recs[2].Seq, 1)
	if got := ofType(w.events(t, id), "LeadAssigned"); len(got) != 1 {
		t.Fatalf("routed by a: %d LeadAssigned", len(got))
	}
	w.deliver(t, b, recs[2].Seq, 2)
	pool, err := w.store.Load(ctxT(t), adapters.PoolSubject("dach"))
	if err != nil {
		t.Fatal(err)
	}
	turns := 0
	for _, e := range eventsOf(pool) {
		turns += 1 + len(e.GetPoolTurnTaken().GetBefore())
	}
	if turns != 1 {
		t.Errorf("the lead took %d turns of its pool, want 1", turns)
	}
	if got := ofType(w.events(t, id), "LeadAssigned"); len(got) != 1 {
		t.Errorf("after the redelivery: %d LeadAssigned", len(got))
	}
}

// staleLeads reads leads as a replica behind the consumer that
// delivered an event: its first read of a lead leaves out the last event.
type staleLeads struct {
	*adapters.Leads
	short testenv.ShortRead
}

func (s *staleLeads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return s.short.Trim(s.Leads.Load(ctx, leadID))
}

// A LeadQualified delivered before the read of its lead shows it is
// retried, as the consumer retries a failed handler, and the lead routed;
// a read without it found the lead not qualified by the event, and the
// event was acknowledged with the lead left unrouted.
func TestQualificationAheadOfTheReadIsRetried(t *testing.T) {
	w := newWorld(t)
	id := w.mqlUnrouted(t)
	q := w.lastEvent(t, id)
	a := w.app(t, &staleLeads{Leads: adapters.NewLeads(w.store)})
	errs := testenv.Retried(5, func() error { // as the consumer retries
		return a.RouteQualified(ctxT(t), id, q.Seq, q.Event, false, envelope.Meta{})
	})
	if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrBehind) {
		t.Errorf("failed attempts %v, want one ErrBehind", errs)
	}
	if got := ofType(w.events(t, id), "LeadAssigned"); len(got) != 1 {
		t.Fatalf("%d LeadAssigned, want 1", len(got))
	}
}

// A timer that fires before the read of its lead shows the step that
// set it is retried, and its step's warning written; a read without the
// step found the step over and the timer was dropped.
func TestTimerAheadOfTheReadIsRetried(t *testing.T) {
	w := newWorld(t)
	id := w.mqlUnrouted(t)
	q := w.lastEvent(t, id)
	if err := w.app(t, adapters.NewLeads(w.store)).RouteQualified(ctxT(t), id, q.Seq, q.Event, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	step := w.lastEvent(t, id)
	if step.Event.GetEventType() != "LeadAssigned" {
		t.Fatalf("last event %s, want LeadAssigned", step.Event.GetEventType())
	}
	var warn *eventv1.SLATimer
	for _, tm := range app.TimersFor(step.Seq, step.Event) {
		if tm.GetPhase() == eventv1.TimerPhase_TIMER_PHASE_WARN {
			warn = tm
		}
	}
	if warn == nil {
		t.Fatal("LeadAssigned set no warning timer")
	}
	// Fired at its time: this clock shows it.
	a := w.app(t, &staleLeads{Leads: adapters.NewLeads(w.store)}, app.WithClock(func() time.Time { return warn.GetFireAt().AsTime() }))
	errs := testenv.Retried(5, func() error { // as the timer consumer retries
		return a.FireTimer(ctxT(t), warn, false, envelope.Meta{})
	})
	if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrBehind) {
		t.Errorf("failed attempts %v, want one ErrBehind", errs)
	}
	if got := ofType(w.events(t, id), "SLAWarned"); len(got) != 1 {
		t.Fatalf("%d SLAWarned, want 1", len(got))
	}
}

// laggingRouting answers the routing subject's last event and the
// stream's end as a replica behind the others does: once freeze is
// called, as they were then. Everything else reads the stream.
type laggingRouting struct {
	app.Store
	frozen atomic.Pointer[laggingSubject]
}

// laggingSubject is the routing subject with LastAsOf frozen.
type laggingSubject struct {
	app.Subject
	seq, end uint64
	ev       *eventv1.Event
}

func (s *laggingSubject) LastAsOf(context.Context) (uint64, *eventv1.Event, uint64, error) {
	return s.seq, s.ev, s.end, nil
}

func (l *laggingRouting) Routing() app.Subject {
	if f := l.frozen.Load(); f != nil {
		return f
	}
	return l.Store.Routing()
}

// freeze takes the routing subject's last event and the stream's end as
// they are now; later answers keep them.
func (l *laggingRouting) freeze(t testing.TB) {
	t.Helper()
	r := l.Store.Routing()
	seq, ev, end, err := r.LastAsOf(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	l.frozen.Store(&laggingSubject{Subject: r, seq: seq, end: end, ev: ev})
}

// A lead is routed with every routing change stored before its
// LeadQualified, also when the replica that answers the routing read is
// behind that change (a consumer on another replica delivered the event):
// routing asks the stream's leader. It once routed with the routing data
// it had cached.
func TestRoutingSeesChangesBeforeTheEvent(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 100)
	s.stop() // the app below is the only one to route
	store := &laggingRouting{Store: adapters.NewStore(w.store, w.nats.JS)}
	a := w.appOn(t, adapters.NewLeads(w.store), store)
	route := func(id string) *eventv1.RoutingDecision {
		t.Helper()
		recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(id))
		if err != nil {
			t.Fatal(err)
		}
		q := recs[len(recs)-1]
		if err := a.RouteQualified(ctxT(t), id, q.Seq, q.Event, false, envelope.Meta{}); err != nil {
			t.Fatal(err)
		}
		return ofType(w.events(t, id), "LeadAssigned")[0].GetLeadAssigned().GetDecision()
	}
	before := route(w.mql(t, dach(50))).GetRoutingVersion()
	store.freeze(t)

	s = w.start(t) // a routing change, then a lead qualified after it
	if _, err := s.client.PutRep(ctxT(t), &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 100, Active: true}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	s.stop()
	if got := route(w.mql(t, dach(50))).GetRoutingVersion(); got != before+1 {
		t.Fatalf("routed with routing version %d, want %d (the change before the lead)", got, before+1)
	}
}

// mqlUnrouted is an MQL with routing data in place and no handoff
// running: only what the test calls routes it or fires its timers.
func (w *world) mqlUnrouted(t testing.TB) string {
	t.Helper()
	s := w.start(t)
	routingSetup(t, s.client, 100)
	s.stop()
	return w.mql(t, dach(50))
}

// lastEvent is the lead's last stored event.
func (w *world) lastEvent(t testing.TB, id string) eventstore.Record {
	t.Helper()
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(id))
	if err != nil || len(recs) == 0 {
		t.Fatalf("lead %s: %d events, %v", id, len(recs), err)
	}
	return recs[len(recs)-1]
}

// replica is a handoff replica's lead handler, without its consumers.
func (w *world) replica(t testing.TB) *ports.Events {
	t.Helper()
	return ports.NewEvents(w.app(t, adapters.NewLeads(w.store)), slog.New(slog.DiscardHandler))
}

// deliver hands e the lead event stored at seq as the consumer would, as
// its delivered-th delivery.
func (w *world) deliver(t testing.TB, e *ports.Events, seq uint64, delivered uint64) {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctxT(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	err = e.Lead(ctxT(t), consume.Msg{Stream: stream, Subject: m.Subject, Key: eventstore.LeadID(m.Subject), Seq: seq,
		Time: m.Time, Header: m.Header, Data: m.Data, Delivered: delivered})
	if err != nil {
		t.Fatalf("handle seq %d: %v", seq, err)
	}
}

// A replica whose fold of a lead is older than a command another replica
// served (a hand assignment while its consumer lagged) routes the lead's
// LeadQualified on that fold: its LeadAssigned loses the race, and the
// reservation its decision made is given back, not left to hold a slot
// of a rep who never got the lead.
// Also when the routing came late and writes the route breach before its
// LeadAssigned (it gave nothing back: it read the breach for the rep).
func TestAStaleFoldsLostRoutingGivesItsReservationBack(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprint("late ", late), func(t *testing.T) { testStaleFoldsLostRouting(t, late) })
	}
}

func testStaleFoldsLostRouting(t *testing.T, late bool) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 100)
	s.stop()
	id := uuid.NewString()
	if late {
		w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}, intakeActor)
		w.qualifyWithin(t, id, time.Nanosecond)
	} else {
		id = w.mql(t, dach(50))
	}
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(id))
	if err != nil || len(recs) != 3 {
		t.Fatalf("the MQL's events: %d, %v", len(recs), err)
	}
	b := w.replica(t)
	for _, r := range recs[:2] {
		w.deliver(t, b, r.Seq, 1)
	}
	// Assigned by hand to mia (no pool's), on another replica, meanwhile.
	if _, err := w.app(t, adapters.NewLeads(w.store)).AssignLead(ctxT(t), app.AssignLead{LeadID: id, RepID: "mia", RequestID: uuid.NewString(), By: ops},
		envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	w.deliver(t, b, recs[2].Seq, 1) // its first delivery, behind
	if got := ofType(w.events(t, id), "LeadAssigned"); len(got) != 1 || ownerOf(got[0]) != "mia" {
		t.Fatalf("LeadAssigned %v, want only the hand assignment to mia", got)
	}
	wantReserved(t, w, id, "mia")
}
