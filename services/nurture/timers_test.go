package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
)

// A new lead's older score delivered again after a newer one (a lost
// acknowledgement, a re-drive) moves its engagement timer back to the
// older deadline, where the lead is not due yet. The lead is still
// recycled at its own deadline; the timer was once spent at the older
// one, and the lead stayed NEW for good.
func TestEngagementTimerFollowsTheLeadsDeadline(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	older := w.scored(t, l, 20, 5*time.Second)
	newer := w.scored(t, l, 25, 10*time.Second)
	deadline := stateOf(newer).Deadline
	w.settle(t, group)

	ctx := ctxT(t)
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(l))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	a := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	for _, r := range recs {
		if r.Event.GetEventId() == older.GetEventId() {
			if err := ports.NewEvents(a, log).Lead(ctx, testenv.Delivered(t, stream, r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A past older deadline fires at once, which the old code spent too;
	// only the newer one must still be ahead.
	if time.Now().After(deadline) {
		t.Fatal("too slow: the newer deadline passed before the older score was delivered again")
	}

	evs := w.nurtured(t, l)
	rec := ofType(evs, "LeadRecycled")
	if len(rec) != 1 || rec[0].GetCausationId() != newer.GetEventId() || rec[0].GetRecordedAt().AsTime().Before(deadline) {
		t.Fatalf("recycled %v, want once, caused by the last score, at its deadline %v", rec, deadline)
	}
}
