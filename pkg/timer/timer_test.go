package timer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/timer"
)

// A timer fires once, at its second, as a copy of its payload on its
// lead's fired subject; scheduling the same id again replaces it.
func TestTimerFiresOnceOnItsLeadsSubject(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	s := timer.Stream{Name: "TEST_TIMERS", Prefix: "test.timer", Description: "test"}
	if err := s.Ensure(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	lead := uuid.NewString()
	sched := timer.NewScheduler(n.JS, s, time.Hour)
	payload := &eventv1.TraceContext{Traceparent: "first"}
	at := time.Now().Add(1500 * time.Millisecond)
	if err := sched.Schedule(ctx, timer.Timer{LeadID: lead, ID: "t1", At: at, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	payload = &eventv1.TraceContext{Traceparent: "again"}
	if err := sched.Schedule(ctx, timer.Timer{LeadID: lead, ID: "t1", At: at, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for p := range 16 {
		filters = append(filters, s.FiredSubjects(p)...)
	}
	cons, err := n.JS.OrderedConsumer(ctx, s.Name, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no timer fired: %v", err)
	}
	if time.Now().Before(at.Truncate(time.Second)) {
		t.Fatalf("fired early: at %s, now %s", at, time.Now())
	}
	got := &eventv1.TraceContext{}
	if err := proto.Unmarshal(m.Data(), got); err != nil || got.GetTraceparent() != "again" || s.LeadID(m.Subject()) != lead {
		t.Fatalf("fired %q on %s (%v)", got.GetTraceparent(), m.Subject(), err)
	}
	if m, err := cons.Next(jetstream.FetchMaxWait(2500 * time.Millisecond)); err == nil {
		t.Fatalf("fired twice: %s", m.Subject())
	}
}

// A deduplicated timer is one lead's: another lead's timer of the same
// name, scheduled within the duplicates window, is not dropped as its
// repeat.
func TestDedupeIsPerLead(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	s := timer.Stream{Name: "TEST_TIMERS", Prefix: "test.timer", Description: "test"}
	if err := s.Ensure(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	sched := timer.NewScheduler(n.JS, s, time.Hour)
	leads := []string{uuid.NewString(), uuid.NewString()}
	for _, lead := range leads {
		for range 2 { // the second is a repeat of the first
			if err := sched.Schedule(ctx, timer.Timer{LeadID: lead, ID: "engage", At: time.Now().Add(time.Hour),
				Payload: &eventv1.TraceContext{}, Dedupe: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := n.JS.Stream(ctx, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, lead := range leads {
		if _, err := st.GetLastMsgForSubject(ctx, "test.timer.at.*."+lead+".engage"); err != nil {
			t.Errorf("lead %s: its timer is not scheduled: %v", lead, err)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Fatalf("%v stored, want one schedule a lead (%v)", info.State.Msgs, err)
	}
}

// A fired timers' TTL under an hour is refused before it fails every
// schedule (the server refuses a TTL under a second) or drops fired
// timers a consumer down for minutes would still handle.
func TestCheckTTL(t *testing.T) {
	for _, c := range []struct {
		ttl time.Duration
		ok  bool
	}{{0, true}, {time.Hour, true}, {30 * 24 * time.Hour, true}, {500 * time.Millisecond, false}, {time.Minute, false}, {-time.Hour, false}} {
		if err := timer.CheckTTL("-timer-ttl", c.ttl); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.ttl, err, c.ok)
		}
	}
}
