package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

func setup(t *testing.T) (*testenv.NATS, *eventstore.Store) {
	t.Helper()
	n := testenv.StartNATS(t)
	if _, err := eventstore.EnsureStream(context.Background(), n.JS, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return n, eventstore.New(n.JS, "")
}

func activity(t testing.TB, leadID, detail string) *eventv1.Event {
	t.Helper()
	ev, err := envelope.NewEvent(leadID, &eventv1.ActivityRecorded{
		ActivityId: uuid.NewString(), Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: detail,
	}, envelope.Meta{CorrelationID: "c1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAppendLoadRoundTrip(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)

	e1, e2, e3 := activity(t, lead, "a"), activity(t, lead, "b"), activity(t, lead, "c")
	v1, err := s.Append(ctx, subj, 0, e1)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Append(ctx, subj, v1, e2, e3)
	if err != nil {
		t.Fatal(err)
	}
	if v2 <= v1 {
		t.Fatalf("version did not grow: %d then %d", v1, v2)
	}
	recs, err := s.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("loaded %d events, want 3", len(recs))
	}
	for i, want := range []*eventv1.Event{e1, e2, e3} {
		if !proto.Equal(recs[i].Event, want) {
			t.Errorf("event %d differs:\n got %v\nwant %v", i, recs[i].Event, want)
		}
	}
	if recs[2].Seq != v2 {
		t.Errorf("last seq %d, version %d", recs[2].Seq, v2)
	}
	if got := envelope.Payload(recs[0].Event).(*eventv1.ActivityRecorded).GetDetail(); got != "a" {
		t.Errorf("payload detail %q", got)
	}
	if recs[0].Event.GetEventType() != "ActivityRecorded" || recs[0].Event.GetSchemaVersion() != 1 {
		t.Errorf("envelope: %v", recs[0].Event)
	}
	other, err := s.Load(ctx, eventstore.LeadSubject(uuid.NewString()))
	if err != nil || len(other) != 0 {
		t.Fatalf("empty lead: %v, %v", other, err)
	}
}

func TestStaleVersionIsATypedConflictAndStoresNothing(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	subj := eventstore.LeadSubject(uuid.NewString())
	v, err := s.Append(ctx, subj, 0, activity(t, "x", "first"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, subj, 0, activity(t, "x", "stale"), activity(t, "x", "stale2"))
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want ConflictError, got %v", err)
	}
	if ce.Subject != subj || ce.Expected != 0 || ce.Actual != v {
		t.Fatalf("conflict %+v, want subject %s actual %d", ce, subj, v)
	}
	recs, _ := s.Load(ctx, subj)
	if len(recs) != 1 {
		t.Fatalf("a refused append stored something: %d events", len(recs))
	}
}

// Racers each read the version and append one event at it. The server must
// let exactly one win per version: the stream ends up with exactly as many
// events as reported wins, each at a distinct version, none overwritten.
func TestRacingAppendersOnOneLead(t *testing.T) {
	n, s := setup(t)
	ctx := context.Background()
	subj := eventstore.LeadSubject(uuid.NewString())
	const racers, perRacer = 8, 25

	var mu sync.Mutex
	won := map[string]uint64{} // event id -> version it won
	conflicts := 0
	var wg sync.WaitGroup
	for r := range racers {
		// Each racer on its own connection, as separate replicas would be.
		_, js := n.Connect(t)
		rs := eventstore.New(js, "")
		wg.Go(func() {
			for i := 0; i < perRacer; {
				v, err := rs.Version(ctx, subj)
				if err != nil {
					t.Error(err)
					return
				}
				ev := activity(t, "x", fmt.Sprintf("r%d-%d", r, i))
				nv, err := rs.Append(ctx, subj, v, ev)
				if errors.Is(err, eventstore.ErrConflict) {
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				won[ev.GetEventId()] = nv
				mu.Unlock()
				i++
			}
		})
	}
	wg.Wait()
	recs, err := s.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != racers*perRacer || len(won) != racers*perRacer {
		t.Fatalf("stored %d, won %d, want %d", len(recs), len(won), racers*perRacer)
	}
	for _, r := range recs {
		v, ok := won[r.Event.GetEventId()]
		if !ok || v != r.Seq {
			t.Fatalf("stored event %s at %d was reported at %d (known %v)", r.Event.GetEventId(), r.Seq, v, ok)
		}
	}
	t.Logf("%d appends, %d lost races", len(recs), conflicts)
	if conflicts == 0 {
		t.Log("no race happened; the test proved nothing this run")
	}
}

func TestAtomicCommitAcrossSubjects(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	claim := eventstore.ClaimSubject("email", "abc")
	leadA, leadB := uuid.NewString(), uuid.NewString()

	evA := activity(t, leadA, "a")
	seqs, err := s.Commit(ctx,
		eventstore.Write{Subject: claim, Claim: &eventv1.Claim{LeadId: leadA, EventId: evA.GetEventId()}},
		eventstore.Write{Subject: eventstore.LeadSubject(leadA), Event: evA},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[1] != seqs[0]+1 {
		t.Fatalf("seqs %v", seqs)
	}
	got, err := s.Get(ctx, seqs[1])
	if err != nil || got.Subject != eventstore.LeadSubject(leadA) {
		t.Fatalf("seq %d holds %q (%v)", seqs[1], got.Subject, err)
	}

	// A second lead claiming the same key loses, and its event is not
	// stored either: claim and event commit together or not at all.
	evB := activity(t, leadB, "b")
	_, err = s.Commit(ctx,
		eventstore.Write{Subject: claim, Claim: &eventv1.Claim{LeadId: leadB, EventId: evB.GetEventId()}},
		eventstore.Write{Subject: eventstore.LeadSubject(leadB), Event: evB},
	)
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Subject != claim || ce.Actual != seqs[0] {
		t.Fatalf("want conflict on the claim at %d, got %v", seqs[0], err)
	}
	if recs, _ := s.Load(ctx, eventstore.LeadSubject(leadB)); len(recs) != 0 {
		t.Fatalf("losing batch stored %d events", len(recs))
	}
	last, err := s.Last(ctx, claim, eventstore.LeadSubject(leadB))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := last[eventstore.LeadSubject(leadB)]; ok {
		t.Fatal("lead B has a message")
	}
	c, err := eventstore.DecodeClaim(last[claim])
	if err != nil || c.GetLeadId() != leadA {
		t.Fatalf("claim points to %q (%v), want %s", c.GetLeadId(), err, leadA)
	}
}

// Sending the same commit twice (a retry after a lost answer) stores it
// once and answers the first sequences both times.
func TestRepeatedCommitIsStoredOnce(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	ev1, ev2 := activity(t, lead, "1"), activity(t, lead, "2")
	claim := eventstore.Write{Subject: eventstore.ClaimSubject("idem", "k1"), Claim: &eventv1.Claim{LeadId: lead, EventId: ev2.GetEventId()}}
	batch := []eventstore.Write{claim, {Subject: subj, Event: ev1}, {Subject: subj, Event: ev2, Unchecked: true}}

	first, err := s.Commit(ctx, batch...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Commit(ctx, batch...)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if fmt.Sprint(first) != fmt.Sprint(again) {
		t.Fatalf("first %v, repeat %v", first, again)
	}
	single := activity(t, lead, "3")
	v1, err := s.Append(ctx, subj, first[2], single)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Append(ctx, subj, first[2], single)
	if err != nil || v2 != v1 {
		t.Fatalf("repeat single: %d %v, want %d", v2, err, v1)
	}
	recs, _ := s.Load(ctx, subj)
	if len(recs) != 3 {
		t.Fatalf("%d events stored, want 3", len(recs))
	}
}

// A lead with more events than one direct-get response can carry loads
// whole, in order.
func TestLoadPagesThroughLongHistories(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	big := strings.Repeat("x", 2048)
	var v uint64
	const total = 1500
	for i := 0; i < total; i += 100 {
		evs := make([]*eventv1.Event, 100)
		for j := range evs {
			evs[j] = activity(t, lead, fmt.Sprintf("%d-%s", i+j, big))
		}
		var err error
		if v, err = s.Append(ctx, subj, v, evs...); err != nil {
			t.Fatal(err)
		}
		// Interleave another lead so the subject's messages are not contiguous.
		if _, err := s.Append(ctx, eventstore.LeadSubject(uuid.NewString()), 0, activity(t, "o", "other")); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != total {
		t.Fatalf("loaded %d, want %d", len(recs), total)
	}
	for i, r := range recs {
		d := envelope.Payload(r.Event).(*eventv1.ActivityRecorded).GetDetail()
		if !strings.HasPrefix(d, fmt.Sprintf("%d-", i)) {
			t.Fatalf("event %d out of order: %.10s", i, d)
		}
	}
	after, err := s.LoadAfter(ctx, subj, recs[total-11].Seq)
	if err != nil || len(after) != 10 {
		t.Fatalf("LoadAfter: %d, %v", len(after), err)
	}
}

func TestStreamDeniesDeleteAndPurge(t *testing.T) {
	n, s := setup(t)
	ctx := context.Background()
	v, err := s.Append(ctx, eventstore.LeadSubject("l1"), 0, activity(t, "l1", "a"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := n.JS.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, v); err == nil {
		t.Fatal("delete was allowed")
	}
	if err := st.Purge(ctx); err == nil {
		t.Fatal("purge was allowed")
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("lead.l1")); err == nil {
		t.Fatal("subject purge was allowed")
	}
	if recs, _ := s.Load(ctx, eventstore.LeadSubject("l1")); len(recs) != 1 {
		t.Fatal("event gone")
	}
}

func TestEventsSurviveRestart(t *testing.T) {
	n, s := setup(t)
	ctx := context.Background()
	subj := eventstore.LeadSubject(uuid.NewString())
	v, err := s.Append(ctx, subj, 0, activity(t, "x", "before"))
	if err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	recs, err := s.Load(ctx, subj)
	if err != nil || len(recs) != 1 || recs[0].Seq != v {
		t.Fatalf("after restart: %v %v", recs, err)
	}
	if _, err := s.Append(ctx, subj, 0, activity(t, "x", "stale")); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale append after restart: %v", err)
	}
	if _, err := s.Append(ctx, subj, v, activity(t, "x", "after")); err != nil {
		t.Fatal(err)
	}
}
