package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// An event that is not what its subject and header say (another lead's
// body under this lead's subject) is not scored or folded in: it is
// dead-lettered, and its lead waits for an operator.
func TestMalformedEventIsDeadLettered(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, webinarModel(50))
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

	// A re-score meets it too. It completes only once its dead letters
	// are dealt with: its group, removed then, would serve no re-drive,
	// and a lead it held back would stay unscored under the new version.
	v := activate(t, s.client, webinarModel(40))
	scan := "rescore-v" + strconv.FormatUint(uint64(v), 10)
	var held []consume.DeadLetter
	eventually(t, 30*time.Second, func() bool {
		held = nil
		dls, _ := consume.DeadLetters(ctxT(t), w.nats.JS, consume.DefaultDeadLetterStream)
		for _, d := range dls {
			if d.Group == scan {
				held = append(held, d)
			}
		}
		return len(held) > 0
	}, "the re-score did not dead-letter the malformed event")
	time.Sleep(time.Second) // long enough for a re-score that ignored it to finish
	p, err := s.client.GetRescoreProgress(ctxT(t), &qualificationv1.GetRescoreProgressRequest{Version: v})
	if err != nil || p.GetState() != qualificationv1.RescoreState_RESCORE_STATE_RUNNING || p.GetHeldBack() != uint32(len(held)) {
		t.Fatalf("re-score progress with %d dead letters: %v %v, want running and holding them back", len(held), p, err)
	}
	for _, d := range held {
		if err := consume.Skip(ctxT(t), w.nats.JS, consume.DefaultDeadLetterStream, d.Group, d.Key, d.StreamSeq); err != nil {
			t.Fatal(err)
		}
	}
	rescored(t, s.client, v)
	dls, err := consume.DeadLetters(ctxT(t), w.nats.JS, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if d.Group == scan {
			t.Errorf("the completed re-score left %v", d)
		}
	}
}
