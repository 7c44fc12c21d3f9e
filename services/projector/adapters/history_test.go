package adapters

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The journey the dashboard draws holds every event under the lead, also
// one a write that bypassed the store's check appended at an older
// version (the version chain the services follow steps over the event
// between): an operator looks there for what broke.
func TestLeadHistoryHoldsWhatABypassingWriteSteppedOver(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{Name: "LEADFLOW"}); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(n.JS, "LEADFLOW")
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	var st lifecycle.State
	next := func(cmd lifecycle.Command, p proto.Message) *eventv1.Event {
		ev, s, err := lifecycle.NewEvent(lead, st, cmd, lifecycle.DefaultPolicy(), p, envelope.Meta{CorrelationID: "c"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		st = s
		return ev
	}
	activity := func() *eventv1.Event {
		return next(lifecycle.Command{Name: lifecycle.RecordActivity},
			&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK})
	}
	if _, err := store.Append(ctx, subj, 0, next(lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{})); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, subj, 1, activity()); err != nil {
		t.Fatal(err)
	}
	bypass := activity()
	bypass.VersionBefore = 1
	publishRaw(t, n, lead, bypass)

	recs, err := NewStream(n.JS, "LEADFLOW").LeadHistory(ctx, lead)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Fatalf("journey holds stream sequences %v, want [1 2 3]", seqs)
	}
}

// A what-if's replay hands on no event that is not its subject's lead's:
// such an event counts for nothing in a score (docs/events.md).
func TestReplayPassesOverAnotherLeadsEvent(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{Name: "LEADFLOW"}); err != nil {
		t.Fatal(err)
	}
	lead := uuid.NewString()
	captured, _, err := lifecycle.NewEvent(lead, lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, lifecycle.DefaultPolicy(),
		&eventv1.LeadCaptured{}, envelope.Meta{CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign := proto.CloneOf(captured)
	foreign.LeadId = uuid.NewString()
	publishRaw(t, n, lead, captured)
	publishRaw(t, n, lead, foreign)
	var got []string
	err = NewStream(n.JS, "LEADFLOW").Replay(ctx, time.Time{}, func(_ uint64, _ string, ev *eventv1.Event) {
		got = append(got, ev.GetLeadId())
	}, func(uint64, uint64) {})
	if err != nil || len(got) != 1 || got[0] != lead {
		t.Fatalf("replayed events of leads %v (%v), want the lead's own capture alone", got, err)
	}
}

// publishRaw stores ev under lead's subject as a writer that bypasses the
// event store would: no expected-sequence check.
func publishRaw(t *testing.T, n *testenv.NATS, lead string, ev *eventv1.Event) {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(eventstore.LeadSubject(lead))
	m.Data = b
	m.Header.Set(eventstore.HeaderType, ev.GetEventType())
	if _, err := n.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}
