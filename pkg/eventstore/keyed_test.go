package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// A keyed commit's record answers with the commit's last event, after
// later writes too; a second commit with the key stores nothing.
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

	st, err := n.JS.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	before := msgs(t, st)
	latest, err := s.Version(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.AppendKeyed(ctx, "test", subj, latest, "request-1", "ActivityRecorded", activity(t, lead, "again"))
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) || conflict.Subject != key {
		t.Fatalf("a second commit with the key: %v, want a conflict on %s", err, key)
	}
	if after := msgs(t, st); after != before {
		t.Errorf("the refused commit stored %d messages", after-before)
	}
}

func msgs(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
