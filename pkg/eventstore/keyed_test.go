package eventstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A keyed commit's record answers with the commit's last event, after
// later writes too.
func TestKeyedCommitIsFoundByItsRecord(t *testing.T) {
	n, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	key := eventstore.CommandKeySubject("test", subj, "request-1")
	if key == eventstore.CommandKeySubject("other", subj, "request-1") || key == eventstore.CommandKeySubject("test", subj, "request-2") {
		t.Fatal("keys of other services or requests share a record")
	}
	if _, _, found, err := s.Keyed(ctx, "test", subj, "request-1"); err != nil || found {
		t.Fatalf("a key never used: found %v, %v", found, err)
	}

	v1, err := s.Append(ctx, subj, 0, activity(t, lead, "first"))
	if err != nil {
		t.Fatal(err)
	}
	e2, e3 := activity(t, lead, "b"), activity(t, lead, "c")
	v3, err := s.AppendKeyed(ctx, "test", subj, v1, "request-1", "ActivityRecorded", e2, e3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, subj, v3, activity(t, lead, "later")); err != nil {
		t.Fatal(err)
	}
	outcome, last, found, err := s.Keyed(ctx, "test", subj, "request-1")
	if err != nil || !found || outcome != "ActivityRecorded" || last.Seq != v3 || last.Event.GetEventId() != e3.GetEventId() {
		t.Fatalf("Keyed = %q %d %s %v %v; want the commit's last event at %d", outcome, last.Seq, last.Event.GetEventId(), found, err, v3)
	}

	// A second commit under the key (which callers do not make: they
	// ask Keyed first) keeps the first record.
	before := msgs(t, n)
	latest, err := s.Version(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendKeyed(ctx, "test", subj, latest, "request-1", "ActivityRecorded", activity(t, lead, "again")); err != nil {
		t.Fatal(err)
	}
	if after := msgs(t, n); after != before+1 {
		t.Errorf("the second commit stored %d messages, want its event alone", after-before)
	}
	if _, again, _, err := s.Keyed(ctx, "test", subj, "request-1"); err != nil || again.Seq != v3 {
		t.Errorf("after a second commit the key answers %d, %v; want the first, %d", again.Seq, err, v3)
	}
}

// A record that does not lead to its event (not written by AppendKeyed)
// is taken as none: the caller then reads the subject.
func TestKeyedRecordWithoutItsEventIsNone(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	if _, err := s.Append(ctx, subj, 0, activity(t, lead, "first")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Commit(ctx, eventstore.Write{Subject: eventstore.CommandKeySubject("test", subj, "k"), RecordID: uuid.NewString(),
		Record: &eventv1.IdempotencyRecord{LeadId: lead, EventId: uuid.NewString(), Outcome: "ActivityRecorded"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, found, err := s.Keyed(ctx, "test", subj, "k"); err != nil || found {
		t.Fatalf("Keyed = found %v, %v; want none", found, err)
	}
}

func msgs(t *testing.T, n *testenv.NATS) uint64 {
	t.Helper()
	st, err := n.JS.Stream(context.Background(), eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
