package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// TestAsItsNATSUser scores through the consumer group, with a re-score,
// a dead letter and a re-drive, on qualification's permissions only.
func TestAsItsNATSUser(t *testing.T) {
	if ports.Group != natsauth.QualificationGroup {
		t.Fatalf("group %q, the NATS permissions name %q", ports.Group, natsauth.QualificationGroup)
	}
	t.Run("ScoringFromTheStream", func(t *testing.T) { testScoringFromTheStream(t, newWorldWithUsers) })
	t.Run("DeadLetterAndRedrive", func(t *testing.T) {
		w := newWorldWithUsers(t)
		s := w.start(t)
		activateFirst(t, s.client, scoring.Default())
		rescored(t, s.client, 1)
		// An event nobody can decode: dead-lettered, its lead parked.
		lead := uuid.NewString()
		m := nats.NewMsg(eventstore.LeadSubject(lead))
		m.Header.Set(eventstore.HeaderType, "LeadCaptured")
		m.Data = []byte("not protobuf")
		if _, err := w.nats.JS.PublishMsg(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
		_, ojs := w.nats.ConnectAs(t, natsauth.Operator)
		dead := func() []consume.DeadLetter {
			dls, err := consume.DeadLetters(context.Background(), ojs, consume.DefaultDeadLetterStream)
			if err != nil {
				t.Fatal(err)
			}
			return dls
		}
		eventually(t, 30*time.Second, func() bool { return len(dead()) == 1 }, "no dead letter")
		first := dead()[0].At
		// A re-drive, as leadctl sends it, fails it again; a skip releases the lead.
		if err := consume.Redrive(ctxT(t), ojs, consume.DefaultDeadLetterStream, ports.Group, lead, 0); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := consume.Served(sctx, ojs, consume.DefaultDeadLetterStream, ports.Group, lead); err != nil {
			t.Fatalf("re-drive not served: %v", err)
		}
		// Failed again: still dead, since it first failed.
		if d := dead(); len(d) != 1 || !d[0].At.Equal(first) {
			t.Fatalf("after the re-drive: %+v, want the dead letter since %s", d, first)
		}
		if err := consume.Skip(ctxT(t), ojs, consume.DefaultDeadLetterStream, ports.Group, lead, 0); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() bool { return len(dead()) == 0 }, "skip not served")
		w.settle(t)
	})
}
