package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
)

// staleLeads reads leads as a replica behind the consumer that
// delivered an event: its first read of a lead leaves out the last event.
type staleLeads struct {
	*adapters.Leads
	short testenv.ShortRead
}

func (s *staleLeads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return s.short.Trim(s.Leads.Load(ctx, leadID))
}

// A rejection delivered to nurture before its read of the lead shows it
// (a consumer on one replica, a read from the stream's leader that has not
// applied it yet) is retried, as the consumer retries a failed handler,
// and the lead is recycled; it was once acknowledged as owing nothing,
// and the lead dropped.
func TestEventAheadOfTheReadIsRetried(t *testing.T) {
	w := newWorld(t)
	lead := uuid.NewString()
	w.accepted(t, lead, "smb", 30)
	rejected := w.reject(t, lead, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Event.GetEventId() != rejected.GetEventId() {
		t.Fatalf("the lead's last event is %s", last.Event.GetEventType())
	}
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	a := app.New(&staleLeads{Leads: adapters.NewLeads(w.store)}, adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	handle := ports.NewEvents(a, log).Lead
	m := testenv.Delivered(t, stream, last)

	errs := testenv.Retried(5, func() error { return handle(ctx, m) })
	if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrBehind) {
		t.Errorf("failed attempts %v, want one ErrBehind", errs)
	}
	var recycled bool
	for _, ev := range w.events(t, lead) {
		if ev.GetLeadRecycled() != nil && ev.GetCausationId() == rejected.GetEventId() {
			recycled = true
		}
	}
	if !recycled {
		t.Fatal("the rejected lead was not recycled")
	}
}
