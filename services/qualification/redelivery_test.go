package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// Redelivery changes nothing: the server restarts while leads are being
// written and scored, and afterwards the service runs again with its
// durable consumer deleted, so that every event of the stream is handled a
// second time. Each trigger ends up with exactly one LeadScored, and the
// second pass writes nothing at all.
func TestRedeliveryChangesNothing(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	// Its re-score writes when it completes: done before messages count.
	rescored(t, s.client, activate(t, s.client, scoring.Default()))

	const leads, perLead = 24, 4
	var (
		mu       sync.Mutex
		triggers = map[string]string{} // trigger event id -> lead id
		wg       sync.WaitGroup
		written  = make(chan struct{}, leads*perLead)
	)
	write := func(leadID string, cmd lifecycle.Command, payload func() proto.Message) {
		// Retried until it lands: the server restarts under the writer.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ev, err := w.appendLead(ctx, leadID, cmd, payload(), time.Now())
			cancel()
			if err == nil {
				mu.Lock()
				triggers[ev.GetEventId()] = leadID
				mu.Unlock()
				written <- struct{}{}
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("write to %s: %v", leadID, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range leads {
		wg.Go(func() {
			id := uuid.NewString()
			write(id, lifecycle.Command{Name: lifecycle.Capture}, func() proto.Message {
				p := variedProfile(i)
				p.EmailDomain = "open.example" // no competitors: a finished lead is not scored
				return &eventv1.LeadCaptured{Profile: p}
			})
			for j := range perLead - 1 {
				write(id, lifecycle.Command{Name: lifecycle.RecordActivity}, func() proto.Message {
					return &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: variedActivities(4)[j]}
				})
			}
		})
	}
	for range leads * perLead / 3 {
		<-written
	}
	w.nats.Restart(t)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	w.settle(t)

	scores := func() map[string]int {
		n := map[string]int{}
		for id, lead := range triggers {
			for _, ev := range ofType(w.events(t, lead), "LeadScored") {
				if ev.GetCausationId() == id {
					n[id]++
				}
			}
		}
		return n
	}
	for id, n := range scores() {
		if n != 1 {
			t.Errorf("trigger %s scored %d times", id, n)
		}
	}
	if got := len(scores()); got != len(triggers) {
		t.Fatalf("%d of %d triggers scored", got, len(triggers))
	}

	if wrote := w.handledAgain(t, s); wrote != 0 {
		t.Fatalf("handling every event again wrote %d messages", wrote)
	}
}

// handledAgain has every event of the stream handled a second time (s
// stopped, the group's positions forgotten, a new service started and
// settled), and counts the messages that wrote.
func (w *world) handledAgain(t *testing.T, s *service) uint64 {
	t.Helper()
	before := w.streamMsgs(t)
	s.stop()
	for p := range eventstore.Partitions {
		if err := w.nats.JS.DeleteConsumer(ctxT(t), stream, consume.Durable(ports.Group, p, eventstore.Partitions)); err != nil {
			t.Fatal(err)
		}
	}
	w.start(t)
	w.settle(t)
	return w.streamMsgs(t) - before
}
