package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
)

// staleOnce plays a replica behind the consumer that delivered an event:
// its first read of a lead leaves out the lead's last event.
type staleOnce struct {
	*adapters.Leads
	served atomic.Bool
}

func (s *staleOnce) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	recs, err := s.Leads.Load(ctx, leadID)
	if err == nil && len(recs) > 0 && s.served.CompareAndSwap(false, true) {
		recs = recs[:len(recs)-1]
	}
	return recs, err
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
	data, err := proto.Marshal(last.Event)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	a := app.New(&staleOnce{Leads: adapters.NewLeads(w.store)}, adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	handle := ports.NewEvents(a, log).Lead
	m := consume.Msg{Stream: stream, Subject: eventstore.LeadSubject(lead), Key: lead, Seq: last.Seq, Time: last.Time,
		Header: nats.Header{eventstore.HeaderType: []string{rejected.GetEventType()}}, Data: data, Delivered: 1}

	// What the consumer does: attempts until one succeeds.
	var errs []error
	for range 5 {
		err := handle(ctx, m)
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
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
