package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// TestMain doubles as a qualification replica process: with
// QUALIFICATION_CHILD_NATS set, the test binary runs the service against
// that server (serving gRPC on QUALIFICATION_CHILD_ADDR, if set) until it
// is signalled or killed.
func TestMain(m *testing.M) {
	if url := os.Getenv("QUALIFICATION_CHILD_NATS"); url != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		cfg := Config{Addr: "127.0.0.1:0", NATSURL: url, Stream: stream, Replicas: 1, Workers: 16,
			AckWait: 2 * time.Second, Grace: time.Second}
		if addr := os.Getenv("QUALIFICATION_CHILD_ADDR"); addr != "" {
			cfg.Addr = addr
		}
		if err := run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Three replica processes score leads while activities keep coming. One is frozen (SIGSTOP) past the
// partition hand-over while it holds events, then thawed, with its folds
// now missing what the others scored meanwhile; then the other two are
// killed -9. Every trigger is scored exactly once, each lead's scores
// follow its triggers in order, and every score equals the model applied
// to all the lead's facts as of its trigger: what one replica alone writes.
func TestReplicasFrozenAndKilledScoreFromAllFacts(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	m := scoring.Default()
	activateFirst(t, s.client, m)
	s.stop()

	const leads = 60
	acts := variedActivities(4)
	ids := make([]string, leads)
	for i := range ids {
		ids[i] = uuid.NewString()
		p := variedProfile(i)
		p.EmailDomain = fmt.Sprintf("open%d.example", i) // no disqualifier
		w.write(t, ids[i], lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: p})
	}
	// Activities keep coming, a round for every lead every 250ms, so each
	// replica has work on the same leads before, during and after the
	// freeze.
	rounds := 0
	stopWriting := make(chan struct{})
	written := make(chan struct{})
	go func() {
		defer close(written)
		for {
			for _, id := range ids {
				w.write(t, id, lifecycle.Command{Name: lifecycle.RecordActivity},
					&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: acts[rounds%len(acts)]})
			}
			rounds++
			select {
			case <-stopWriting:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	var procs []*testenv.Child
	for range 3 {
		procs = append(procs, testenv.StartChild(t, "QUALIFICATION_CHILD_NATS="+w.nats.Server.URL()))
	}
	scoredCount := func() int {
		c := 0
		for _, id := range ids {
			c += len(ofType(w.events(t, id), "LeadScored"))
		}
		return c
	}
	eventually(t, 30*time.Second, func() bool { return scoredCount() > leads*3 }, "replicas did not start scoring")
	procs[0].Signal(t, syscall.SIGSTOP)
	time.Sleep(9 * time.Second) // past the member TTL and PinnedTTL (6s)
	procs[0].Signal(t, syscall.SIGCONT)
	time.Sleep(time.Second)
	for _, p := range procs[1:] {
		p.Kill(t)
	}
	time.Sleep(2 * time.Second)
	close(stopWriting)
	<-written
	if t.Failed() {
		t.FailNow()
	}
	total := leads * (1 + rounds)
	eventually(t, 90*time.Second, func() bool { return scoredCount() >= total }, "scored %d of %d triggers", scoredCount(), total)
	time.Sleep(time.Second) // a late duplicate would land now

	for i, id := range ids {
		evs := w.events(t, id)
		bySeq := map[string]int{} // event id -> index in the lead's history
		for k, ev := range evs {
			bySeq[ev.GetEventId()] = k
		}
		last := -1
		scores := 0
		for _, ev := range evs {
			sc := ev.GetLeadScored()
			if sc == nil {
				continue
			}
			scores++
			k, ok := bySeq[ev.GetCausationId()]
			if !ok || k <= last {
				t.Fatalf("lead %d: score caused by %s out of order (index %d after %d)", i, ev.GetCausationId(), k, last)
			}
			last = k
			want := scoring.Score(m, factsUpTo(evs[:k+1]), evs[k].GetRecordedAt().AsTime()).Total
			if int(sc.GetTotal()) != want {
				t.Fatalf("lead %d: score for event %d is %d, the facts as of it give %d", i, k, sc.GetTotal(), want)
			}
		}
		if scores != 1+rounds {
			t.Fatalf("lead %d: %d scores for %d triggers", i, scores, 1+rounds)
		}
	}
}

// factsUpTo folds the facts of a lead's events, as a single replica does.
func factsUpTo(evs []*eventv1.Event) scoring.Facts {
	var f scoring.Facts
	for _, ev := range evs {
		switch p := envelope.Payload(ev).(type) {
		case *eventv1.LeadCaptured:
			f.Profile = scoring.ProfileOf(p.GetProfile())
		case *eventv1.ActivityRecorded:
			f.Activities = append(f.Activities, scoring.Activity{Type: p.GetType(), At: ev.GetOccurredAt().AsTime()})
		}
	}
	return f
}

// spawn runs the service as a child process against w's JetStream, for a
// test that kills it -9, and dials it.
func (w *world) spawn(t *testing.T) (*testenv.Child, qualificationv1.QualificationServiceClient) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	child := testenv.StartChild(t, "QUALIFICATION_CHILD_NATS="+w.nats.Server.URL(), "QUALIFICATION_CHILD_ADDR="+addr)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := qualificationv1.NewQualificationServiceClient(conn)
	eventually(t, 15*time.Second, func() bool {
		_, err := c.GetRescoreProgress(ctxT(t), &qualificationv1.GetRescoreProgressRequest{Version: 1})
		return status.Code(err) != codes.Unavailable
	}, "child did not start serving")
	return child, c
}
