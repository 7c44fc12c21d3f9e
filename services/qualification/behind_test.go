package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/qualification/adapters"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// emptyLeads reads leads as a replica that has applied none of a lead's
// events when the consumer on another replica delivers one: its first
// read of a lead finds nothing.
type emptyLeads struct {
	*adapters.Leads
	short testenv.ShortRead
}

func (e *emptyLeads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return e.short.Trim(e.Leads.Load(ctx, leadID))
}

// staleEnd plays a stream leader behind the replica whose consumer
// delivered an event: its first answer for the stream's end is before
// everything.
type staleEnd struct {
	*adapters.Models
	served atomic.Bool
}

func (s *staleEnd) LastSeq(ctx context.Context) (uint64, error) {
	if s.served.CompareAndSwap(false, true) {
		return 0, nil
	}
	return s.Models.LastSeq(ctx)
}

// An activity delivered before the read of its lead shows the lead is
// retried, as the consumer retries a failed handler, and scored; a read
// that found no lead once acknowledged it unscored.
func TestEventAheadOfTheReadIsRetried(t *testing.T) {
	scoredAfterOneBehind(t, func(w *world) (app.Leads, app.Models) {
		return &emptyLeads{Leads: adapters.NewLeads(w.store), short: testenv.ShortRead{Empty: true}}, adapters.NewModels(w.store, w.nats.JS)
	})
}

// So is one delivered before the stream's end, as the leader tells it,
// reaches it: the scoring models stored before the event might be
// missing from the registry (it once scored with them regardless).
func TestEventAheadOfTheStreamEndIsRetried(t *testing.T) {
	scoredAfterOneBehind(t, func(w *world) (app.Leads, app.Models) {
		return adapters.NewLeads(w.store), &staleEnd{Models: adapters.NewModels(w.store, w.nats.JS)}
	})
}

// scoredAfterOneBehind has a scorer on the stores that stores gives score a
// lead's activity: its first attempt must fail with ErrBehind, its second
// score the activity once.
func scoredAfterOneBehind(t *testing.T, stores func(*world) (app.Leads, app.Models)) {
	t.Helper()
	w := newWorld(t)
	s := w.start(t)
	rescored(t, s.client, activate(t, s.client, scoring.Default()))
	s.stop() // the test's handler is the only one to score the lead

	lead := uuid.NewString()
	w.capture(t, lead, variedProfile(1))
	act := w.activity(t, lead, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST)
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Event.GetEventId() != act.GetEventId() {
		t.Fatalf("the lead's last event is %s", last.Event.GetEventType())
	}
	log := slog.New(slog.DiscardHandler)
	leads, models := stores(w)
	a := app.New(leads, models, adapters.NewScans(w.nats.JS, stream), app.WithLogger(log), app.WithPolicy(lifecycle.DefaultPolicy()))
	handle := ports.NewEvents(a, log).Score
	m := testenv.Delivered(t, stream, last)

	errs := testenv.Retried(5, func() error { return handle(ctxT(t), m) })
	if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrBehind) {
		t.Errorf("failed attempts %v, want one ErrBehind", errs)
	}
	var scored int
	for _, ev := range ofType(w.events(t, lead), "LeadScored") {
		if ev.GetCausationId() == act.GetEventId() {
			scored++
		}
	}
	if scored != 1 {
		t.Fatalf("the activity was scored %d times, want once", scored)
	}
}
