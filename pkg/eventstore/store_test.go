package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	"github.com/leadflow/leadflow/pkg/natsserver"
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

// A commit whose answer was lost, and after which another writer appended
// to the same lead, was stored: sending it again reports the first
// sequences, not a conflict, and stores nothing.
func TestLostAckFollowedByACompetingWriteIsSuccess(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	ev := activity(t, lead, "mine")
	batch := []eventstore.Write{
		{Subject: eventstore.ClaimSubject("idem", uuid.NewString()), Claim: &eventv1.Claim{LeadId: lead, EventId: ev.GetEventId()}},
		{Subject: subj, Event: ev},
	}
	first, err := s.Commit(ctx, batch...)
	if err != nil {
		t.Fatal(err)
	}
	// The competing writer read the lead after our commit landed.
	if _, err := s.Append(ctx, subj, first[1], activity(t, lead, "theirs")); err != nil {
		t.Fatal(err)
	}
	again, err := s.Commit(ctx, batch...)
	if err != nil {
		t.Fatalf("the repeat of a stored commit: %v", err)
	}
	if fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("repeat answered %v, first %v", again, first)
	}
	recs, err := s.Load(ctx, subj)
	if err != nil || len(recs) != 2 {
		t.Fatalf("lead holds %d events (%v), want 2", len(recs), err)
	}

	// A commit that was not stored still loses its race as a conflict.
	_, err = s.Append(ctx, subj, first[1], activity(t, lead, "stale"))
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Actual != recs[1].Seq {
		t.Fatalf("stale append: %v, want a conflict at %d", err, recs[1].Seq)
	}
}

// The same for a single write once the server's duplicates window, which
// answers a repeated message id by itself, has passed.
func TestLostAckOfASingleWriteBeyondTheDuplicatesWindow(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	const window = 100 * time.Millisecond // the server's minimum
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{Duplicates: window}); err != nil {
		t.Fatal(err)
	}
	s := eventstore.New(n.JS, "")
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	ev := activity(t, lead, "mine")
	v, err := s.Append(ctx, subj, 0, ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, subj, v, activity(t, lead, "theirs")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * window) // set-up, not a check: let the server forget the message id
	again, err := s.Append(ctx, subj, 0, ev)
	if err != nil || again != v {
		t.Fatalf("repeat: %d, %v; want %d", again, err, v)
	}
	if recs, _ := s.Load(ctx, subj); len(recs) != 2 {
		t.Fatalf("lead holds %d events, want 2", len(recs))
	}
}

// A server that does not answer within the deadline leaves the outcome
// unknown, and Commit says so with a typed error; sending the same writes
// again finds out. A server that comes back within the deadline gets the
// write, once.
func TestUnansweredCommitIsRetriedThenUnknown(t *testing.T) {
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsserver.Config{Dir: t.TempDir(), Port: lis.Addr().(*net.TCPAddr).Port}
	lis.Close()
	srv, err := natsserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	nc, js, err := eventstore.Dial(srv.URL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	s := eventstore.New(js, "")
	lost, retried := uuid.NewString(), uuid.NewString()
	lostEv, retriedEv := activity(t, lost, "lost"), activity(t, retried, "retried")

	srv.Shutdown()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = s.Append(short, eventstore.LeadSubject(lost), 0, lostEv)
	var ue *eventstore.UnknownOutcomeError
	if !errors.As(err, &ue) || !errors.Is(err, eventstore.ErrUnknownOutcome) || errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("commit to a silent server: %v, want an UnknownOutcomeError", err)
	}

	// Down when this commit starts, back before its deadline.
	done := make(chan error, 1)
	go func() {
		long, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, err := s.Append(long, eventstore.LeadSubject(retried), 0, retriedEv)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // set-up: let the first attempts fail
	if srv, err = natsserver.Start(cfg); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("commit across a restart: %v", err)
	}
	// The unknown one, sent again: stored once, whichever way it went.
	if _, err := s.Append(ctx, eventstore.LeadSubject(lost), 0, lostEv); err != nil {
		t.Fatalf("the unknown commit sent again: %v", err)
	}
	for _, c := range []struct {
		lead string
		ev   *eventv1.Event
	}{{lost, lostEv}, {retried, retriedEv}} {
		recs, err := s.Load(ctx, eventstore.LeadSubject(c.lead))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Event.GetEventId() != c.ev.GetEventId() {
			t.Fatalf("lead %s holds %d events, want its one event once", c.lead, len(recs))
		}
	}
}

// A write can require a group of subjects to be untouched: here a lead's
// first event, refused once a claim shares its id, and recognised as
// stored when sent again after others wrote.
func TestExpectFilterChecksAGroupOfSubjects(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	id := uuid.NewString()
	group := "*.*." + id
	first := activity(t, id, "first")
	w := eventstore.Write{Subject: eventstore.LeadSubject(id), ExpectFilter: group, Event: first}
	seqs, err := s.Commit(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	claimSeqs, err := s.Commit(ctx, eventstore.Write{Subject: eventstore.ClaimSubject("email", id), Expect: seqs[0], ExpectFilter: group,
		Record: &eventv1.Claim{LeadId: id}, RecordID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Commit(ctx, w)
	if err != nil || again[0] != seqs[0] {
		t.Fatalf("repeat: %v %v, want %d", again, err, seqs[0])
	}
	_, err = s.Commit(ctx, eventstore.Write{Subject: eventstore.LeadSubject(id), ExpectFilter: group, Event: activity(t, id, "other")})
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Subject != eventstore.LeadSubject(id) || ce.Actual != claimSeqs[0] {
		t.Fatalf("second first event: %v, want a conflict at the claim's %d", err, claimSeqs[0])
	}
	last, err := s.Last(ctx, eventstore.ClaimSubject("email", id))
	if err != nil {
		t.Fatal(err)
	}
	if got := last[eventstore.ClaimSubject("email", id)].Header.Get(eventstore.HeaderType); got != "Claim" {
		t.Fatalf("a record is typed by its message name, got %q", got)
	}
}

// CommitEach answers every write on its own: stored, refused as a
// conflict, or recognised as stored before.
func TestCommitEachAnswersEveryWrite(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	taken := uuid.NewString()
	v, err := s.Append(ctx, eventstore.LeadSubject(taken), 0, activity(t, taken, "first"))
	if err != nil {
		t.Fatal(err)
	}
	repeated := uuid.NewString()
	again := eventstore.Write{Subject: eventstore.LeadSubject(repeated), Event: activity(t, repeated, "once")}
	first, err := s.Commit(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	var writes []eventstore.Write
	for range 50 {
		id := uuid.NewString()
		writes = append(writes, eventstore.Write{Subject: eventstore.LeadSubject(id), Event: activity(t, id, "new")})
	}
	writes = append(writes, eventstore.Write{Subject: eventstore.LeadSubject(taken), Event: activity(t, taken, "stale")}, again)
	seqs, errs := s.CommitEach(ctx, writes)
	for i := range 50 {
		if errs[i] != nil || seqs[i] == 0 {
			t.Fatalf("write %d: %d %v", i, seqs[i], errs[i])
		}
	}
	var ce *eventstore.ConflictError
	if !errors.As(errs[50], &ce) || ce.Actual != v {
		t.Fatalf("stale write: %v, want a conflict at %d", errs[50], v)
	}
	if errs[51] != nil || seqs[51] != first[0] {
		t.Fatalf("repeated write: %d %v, want %d", seqs[51], errs[51], first[0])
	}
}

// Every event records the version it was appended at; the later events of
// one commit on one lead say that version is unknown, so no reader extends
// a fold with them without reading.
func TestVersionBefore(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	e1 := activity(t, lead, "1")
	v1, err := s.Append(ctx, subj, 0, e1)
	if err != nil {
		t.Fatal(err)
	}
	e2, e3 := activity(t, lead, "2"), activity(t, lead, "3")
	if _, err := s.Append(ctx, subj, v1, e2, e3); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	got := []uint64{recs[0].Event.GetVersionBefore(), recs[1].Event.GetVersionBefore(), recs[2].Event.GetVersionBefore()}
	if want := []uint64{0, v1, eventstore.VersionUnknown}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("version_before %v, want %v", got, want)
	}
}

// Loads follow version_before back from a subject's last event; these
// histories are short enough for that, or break the chain, or are too
// long, and every load must still be the whole history after the version
// asked, in order.
func TestLoadFollowsVersionsBackOrReadsInBatches(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	details := func(recs []eventstore.Record) string {
		var d []string
		for _, r := range recs {
			d = append(d, envelope.Payload(r.Event).(*eventv1.ActivityRecorded).GetDetail())
		}
		return strings.Join(d, ",")
	}
	check := func(name, subj string, want []string, seqs []uint64) {
		t.Helper()
		for i := range len(want) + 1 {
			var after uint64
			if i > 0 {
				after = seqs[i-1]
			}
			recs, err := s.LoadAfter(ctx, subj, after)
			if err != nil {
				t.Fatalf("%s after %d: %v", name, after, err)
			}
			if got := details(recs); got != strings.Join(want[i:], ",") {
				t.Fatalf("%s after event %d: %q, want %q", name, i, got, strings.Join(want[i:], ","))
			}
			for j := range recs {
				if recs[j].Seq != seqs[i+j] {
					t.Fatalf("%s after event %d: record %d at %d, want %d", name, i, j, recs[j].Seq, seqs[i+j])
				}
			}
		}
	}
	for _, n := range []int{1, 2, 3, 10, 14} {
		lead := uuid.NewString()
		subj := eventstore.LeadSubject(lead)
		var want []string
		var seqs []uint64
		for i := range n {
			d := fmt.Sprint(i)
			v, err := s.Append(ctx, subj, lastOf(seqs), activity(t, lead, d))
			if err != nil {
				t.Fatal(err)
			}
			want, seqs = append(want, d), append(seqs, v)
			// Other leads between, so that no two events of this one are
			// neighbours in the stream.
			if _, err := s.Append(ctx, eventstore.LeadSubject(uuid.NewString()), 0, activity(t, "o", "other")); err != nil {
				t.Fatal(err)
			}
		}
		check(fmt.Sprintf("%d events", n), subj, want, seqs)
	}

	// Two events in one commit: the second cannot name the first's
	// version, and an unchecked write names none.
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	v1, err := s.Append(ctx, subj, 0, activity(t, lead, "a"))
	if err != nil {
		t.Fatal(err)
	}
	v3, err := s.Append(ctx, subj, v1, activity(t, lead, "b"), activity(t, lead, "c"))
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := s.Commit(ctx, eventstore.Write{Subject: subj, Unchecked: true, Event: activity(t, lead, "d")})
	if err != nil {
		t.Fatal(err)
	}
	v5, err := s.Append(ctx, subj, seqs[0], activity(t, lead, "e"))
	if err != nil {
		t.Fatal(err)
	}
	check("unchained", subj, []string{"a", "b", "c", "d", "e"}, []uint64{v1, v3 - 1, v3, seqs[0], v5})

	recs, err := s.Load(ctx, eventstore.LeadSubject(uuid.NewString()))
	if err != nil || len(recs) != 0 {
		t.Fatalf("an empty subject: %d records, %v", len(recs), err)
	}
}

func lastOf(seqs []uint64) uint64 {
	if len(seqs) == 0 {
		return 0
	}
	return seqs[len(seqs)-1]
}

// LeaderMsg reads one message by sequence from the stream's leader: the
// message stored there, and ErrMsgNotFound past the stream's end.
func TestLeaderMsgReadsBySequence(t *testing.T) {
	n, s := setup(t)
	lead := uuid.NewString()
	seq, err := s.Append(context.Background(), eventstore.LeadSubject(lead), 0, activity(t, lead, "one"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := eventstore.LeaderMsg(context.Background(), n.JS, eventstore.DefaultStream, seq)
	if err != nil || m.Sequence != seq || m.Subject != eventstore.LeadSubject(lead) {
		t.Fatalf("message %d from the leader: %v %v", seq, m, err)
	}
	if _, err := eventstore.LeaderMsg(context.Background(), n.JS, eventstore.DefaultStream, seq+1); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("a message past the end: %v, want ErrMsgNotFound", err)
	}
}
