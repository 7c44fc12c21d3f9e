package app

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// racedLeads is one lead's events in memory; before its first append,
// meanwhile runs (another writer's event).
type racedLeads struct {
	recs      []eventstore.Record
	meanwhile func()
	appended  int
}

func (f *racedLeads) Load(context.Context, string) ([]eventstore.Record, error) {
	return append([]eventstore.Record(nil), f.recs...), nil
}

func (f *racedLeads) Append(_ context.Context, _ string, expected uint64, evs ...*eventv1.Event) (uint64, error) {
	if m := f.meanwhile; m != nil {
		f.meanwhile = nil
		m()
	}
	seq := f.recs[len(f.recs)-1].Seq
	if seq != expected {
		return 0, &eventstore.ConflictError{}
	}
	for _, ev := range evs {
		seq++
		f.recs = append(f.recs, eventstore.Record{Seq: seq, Event: ev})
		f.appended++
	}
	return seq, nil
}

func (f *racedLeads) Keyed(context.Context, string, string) (string, eventstore.Record, bool, error) {
	return "", eventstore.Record{}, false, nil
}

func (f *racedLeads) AppendKeyed(ctx context.Context, id string, expected uint64, _, _ string, evs ...*eventv1.Event) (uint64, error) {
	return f.Append(ctx, id, expected, evs...)
}

func (f *racedLeads) After(context.Context, string, uint64) (eventstore.Record, bool, error) {
	return eventstore.Record{}, false, nil
}
func (f *racedLeads) TypeAt(context.Context, uint64) (string, error) { return "", nil }
func (f *racedLeads) Stream() string                                 { return "LEADFLOW" }

type noPrograms struct{}

func (noPrograms) LoadAfter(context.Context, uint64) ([]eventstore.Record, error) { return nil, nil }
func (noPrograms) Version(context.Context) (uint64, error)                        { return 0, nil }
func (noPrograms) Append(context.Context, uint64, *eventv1.Event) (uint64, error) {
	return 0, nil
}

type timerLog struct{ scheduled []*eventv1.NurtureTimer }

func (l *timerLog) Schedule(_ context.Context, _ string, t *eventv1.NurtureTimer) error {
	l.scheduled = append(l.scheduled, t)
	return nil
}

// An engagement timer whose recycle loses its race to a fact (stored
// between the timer's read and the recycle) is set again for that fact's
// wait: its score schedules the next one only if it lands.
func TestAnEngagementTimerThatLostItsRaceIsSetAgain(t *testing.T) {
	id := uuid.NewString()
	now := time.Now()
	leads := &racedLeads{}
	var st lifecycle.State
	add := func(cmd lifecycle.Command, p proto.Message, at time.Time, policy lifecycle.Policy) *eventv1.Event {
		ev, next, err := lifecycle.NewEvent(id, st, cmd, policy, p, envelope.Meta{Actor: Actor, CorrelationID: "c"}, at)
		if err != nil {
			t.Fatal(err)
		}
		st = next
		leads.recs = append(leads.recs, eventstore.Record{Seq: uint64(len(leads.recs) + 1), Event: ev})
		return ev
	}
	policy := lifecycle.DefaultPolicy()
	policy.EngageWithin = time.Hour
	captured := add(lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{}, now.Add(-90*time.Minute), policy)
	scored := add(lifecycle.Command{Name: lifecycle.Score, Score: 20},
		&eventv1.LeadScored{Total: 20, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE}, now.Add(-90*time.Minute), policy)
	scored.CausationId = captured.GetEventId()
	leads.meanwhile = func() {
		add(lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: "a",
			Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}, now, lifecycle.DefaultPolicy())
	}
	timers := &timerLog{}
	a := New(leads, noPrograms{}, timers, nil, nil)
	a.now = func() time.Time { return now }
	timer := &eventv1.NurtureTimer{TimerId: scored.GetEventId(), LeadId: id, ReviewAt: timestamppb.New(st.Deadline)}
	if err := a.ReviewDue(context.Background(), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if leads.appended != 0 {
		t.Fatalf("%d events appended; the activity's score decides first", leads.appended)
	}
	if len(timers.scheduled) != 1 || !timers.scheduled[0].GetReviewAt().AsTime().After(now) {
		t.Fatalf("timers scheduled %v; want the engagement timer set again for the activity's wait", timers.scheduled)
	}
}
