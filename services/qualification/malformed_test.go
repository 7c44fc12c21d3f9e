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

	w.foreignWebinar(t, lead, other, captured)
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

// foreignWebinar stores another lead's webinar under lead's subject (a
// writer that bypassed the store) and waits for its dead letter in the
// scorer's group. It returns its stream sequence.
func (w *world) foreignWebinar(t *testing.T, lead, other string, like *eventv1.Event) uint64 {
	t.Helper()
	return w.badWebinar(t, lead, other, "ActivityRecorded", like)
}

// badWebinar stores other's webinar under lead's subject with the type
// header typ, and waits for its dead letter in the scorer's group: other
// lead's, or typ another type's, makes it malformed.
func (w *world) badWebinar(t *testing.T, lead, other, typ string, like *eventv1.Event) uint64 {
	t.Helper()
	foreign := proto.Clone(like).(*eventv1.Event)
	foreign.LeadId, foreign.EventId = other, uuid.NewString()
	foreign.Payload = &eventv1.Event_ActivityRecorded{ActivityRecorded: &eventv1.ActivityRecorded{ActivityId: "a", Type: webinar}}
	foreign.EventType = "ActivityRecorded"
	data, err := proto.Marshal(foreign)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(eventstore.LeadSubject(lead))
	m.Data = data
	m.Header.Set(eventstore.HeaderType, typ)
	ack, err := w.nats.JS.PublishMsg(ctxT(t), m, jetstream.WithExpectStream(stream))
	if err != nil {
		t.Fatal(err)
	}
	w.deadLettered(t, ports.Group, lead, ack.Sequence)
	return ack.Sequence
}

// deadLettered waits for lead's dead letter at seq in group.
func (w *world) deadLettered(t *testing.T, group, lead string, seq uint64) {
	t.Helper()
	eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dls, _ := consume.DeadLetters(ctx, w.nats.JS, consume.DefaultDeadLetterStream)
		for _, d := range dls {
			if d.Group == group && d.Key == lead && d.StreamSeq == seq {
				return true
			}
		}
		return false
	}, "lead %s seq %d is not dead-lettered in %s", lead, seq, group)
}

// skip skips lead's dead letter at seq in group and waits until what was
// parked behind it is released.
func (w *world) skip(t *testing.T, group, lead string, seq uint64) {
	t.Helper()
	if err := consume.Skip(ctxT(t), w.nats.JS, consume.DefaultDeadLetterStream, group, lead, seq); err != nil {
		t.Fatal(err)
	}
	if err := consume.Served(ctxT(t), w.nats.JS, consume.DefaultDeadLetterStream, group, lead); err != nil {
		t.Fatal(err)
	}
}

// A lead whose first event a re-score dead-lettered is re-scored once
// what was parked behind it is released by a skip: the scan gives a lead
// its turn at its first event, which was dropped.
func TestARescoreSkipOfTheFirstEventStillRescoresTheLead(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, webinarModel(50))
	other, lead := uuid.NewString(), uuid.NewString()
	like := w.capture(t, other, &eventv1.Profile{Country: "DE"})
	first := w.foreignWebinar(t, lead, other, like) // the lead's first event is another lead's
	w.activity(t, lead, webinar)
	w.skip(t, ports.Group, lead, first)
	eventually(t, 20*time.Second, func() bool { return len(ofType(w.events(t, lead), "LeadScored")) == 1 }, "the webinar was not scored")

	v := activate(t, s.client, webinarModel(20))
	scan := "rescore-v" + strconv.FormatUint(uint64(v), 10)
	w.deadLettered(t, scan, lead, first)
	w.skip(t, scan, lead, first)
	rescored(t, s.client, v)
	var under []uint32
	for _, sc := range ofType(w.events(t, lead), "LeadScored") {
		under = append(under, sc.GetLeadScored().GetModelVersion())
	}
	if len(under) != 2 || under[1] != v {
		t.Fatalf("scored under versions %v, want the webinar's then the re-score's %d", under, v)
	}
}

// A malformed event an operator skipped (the stream keeps it) is not
// counted later either: the lead's loads leave it out, as its delivery
// did, so the next webinar scores 30, not the 60 that would qualify.
// Malformed: another lead's, or its type header another type's.
func TestASkippedMalformedEventIsNotCountedLater(t *testing.T) {
	t.Run("AnotherLeads", func(t *testing.T) { testASkippedMalformedEventIsNotCountedLater(t, false) })
	t.Run("AnotherTypesHeader", func(t *testing.T) { testASkippedMalformedEventIsNotCountedLater(t, true) })
}

func testASkippedMalformedEventIsNotCountedLater(t *testing.T, header bool) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, webinarModel(50))
	lead := uuid.NewString()
	captured := w.capture(t, lead, &eventv1.Profile{Country: "DE"})
	w.settle(t)
	var seq uint64
	if header {
		seq = w.badWebinar(t, lead, lead, "LeadAccepted", captured)
	} else {
		seq = w.foreignWebinar(t, lead, uuid.NewString(), captured)
	}
	w.skip(t, ports.Group, lead, seq)
	w.activity(t, lead, webinar)
	var evs []*eventv1.Event
	eventually(t, 20*time.Second, func() bool {
		evs = w.events(t, lead)
		return len(ofType(evs, "LeadScored")) == 2
	}, "the webinar was not scored")
	w.settle(t)
	evs = w.events(t, lead)
	scores := ofType(evs, "LeadScored")
	if len(scores) != 2 || last(scores).GetLeadScored().GetTotal() != 30 || len(ofType(evs, "LeadQualified")) != 0 {
		t.Fatalf("scores %v, qualified %v: want the webinar's 30 alone, not qualified", scores, ofType(evs, "LeadQualified"))
	}
}
