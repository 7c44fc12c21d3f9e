package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// An event that is not what its subject and header say (another lead's
// body under this lead's subject) is not scored or folded in: it is
// dead-lettered, and its lead waits for an operator.
func TestMalformedEventIsDeadLettered(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activate(t, s.client, webinarModel(50))
	lead, other := uuid.NewString(), uuid.NewString()
	captured := w.capture(t, lead, &eventv1.Profile{Country: "DE"})
	w.settle(t)

	foreign := proto.Clone(captured).(*eventv1.Event)
	foreign.LeadId, foreign.EventId = other, uuid.NewString()
	foreign.Payload = &eventv1.Event_ActivityRecorded{ActivityRecorded: &eventv1.ActivityRecorded{ActivityId: "a", Type: webinar}}
	foreign.EventType = "ActivityRecorded"
	data, err := proto.Marshal(foreign)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(eventstore.LeadSubject(lead))
	m.Data = data
	m.Header.Set(eventstore.HeaderType, "ActivityRecorded")
	ack, err := w.nats.JS.PublishMsg(ctxT(t), m, jetstream.WithExpectStream(stream))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dls, _ := consume.DeadLetters(ctx, w.nats.JS, consume.DefaultDeadLetterStream)
		for _, d := range dls {
			if d.Group == ports.Group && d.Key == lead && d.StreamSeq == ack.Sequence {
				return true
			}
		}
		return false
	}, "the malformed event is not dead-lettered")
	if n := len(ofType(w.events(t, lead), "LeadScored")); n != 1 {
		t.Fatalf("%d scores, want the capture's only", n)
	}
}
