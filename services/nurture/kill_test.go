package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// TestMain doubles as a nurture process: with NURTURE_CHILD_NATS set, the
// test binary runs the service against that server until it is signalled
// or killed. With NURTURE_CHILD_STALL=<event type> it stops for good right
// after appending an event of that type, and says so on stdout.
func TestMain(m *testing.M) {
	if url := os.Getenv("NURTURE_CHILD_NATS"); url != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		cfg := Config{Addr: "127.0.0.1:0", NATSURL: url, Stream: stream, Replicas: 1, Workers: 16, AckWait: 2 * time.Second, Grace: time.Second}
		if stall := os.Getenv("NURTURE_CHILD_STALL"); stall != "" {
			cfg.afterAppend = func(ev *eventv1.Event) {
				if ev.GetEventType() == stall {
					fmt.Printf("stalled %s %s\n", ev.GetLeadId(), ev.GetEventId())
					select {} // until killed
				}
			}
		}
		if err := run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child starts the test binary as a nurture process, which prints
// "stalled <lead> <event>" where it stops.
func (w *world) child(t *testing.T, stall string) *testenv.Child {
	t.Helper()
	return testenv.StartChild(t, "NURTURE_CHILD_NATS="+w.nats.Server.URL(), "NURTURE_CHILD_STALL="+stall)
}

// stalledAt is the lead of the child's next "stalled" line.
func stalledAt(t *testing.T, c *testenv.Child) string {
	t.Helper()
	lead, _, _ := strings.Cut(c.Next(t, "stalled ", 30*time.Second), " ")
	return lead
}

// A nurture process is killed (SIGKILL) after it wrote a lead's
// LeadRecycled and before the NurtureEnrolled. The next process finishes
// the job, and is itself killed at the same point for another lead; a
// third finishes that. Each lead is enrolled once, caused by its one
// recycle.
func TestKillBetweenRecycleAndEnrolment(t *testing.T) {
	w := newWorld(t)
	rejected, lost := uuid.NewString(), uuid.NewString()
	w.accepted(t, rejected, "smb", 30)
	w.accepted(t, lost, "smb", 30)

	killAt := func(c *testenv.Child, lead string) {
		t.Helper()
		if l := stalledAt(t, c); l != lead {
			t.Fatalf("stalled at lead %s, want %s", l, lead)
		}
		c.Kill(t)
		evs := w.events(t, lead)
		if len(ofType(evs, "LeadRecycled")) != 1 || len(ofType(evs, "NurtureEnrolled")) != 0 {
			t.Fatalf("after the kill: %v", types(evs))
		}
	}
	first := w.child(t, "LeadRecycled")
	w.reject(t, rejected, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	killAt(first, rejected)

	// The second process takes the partitions over (after the dead
	// member's TTL and pin), gets the rejection again and enrols.
	second := w.child(t, "LeadRecycled")
	w.nurtured(t, rejected)
	w.lose(t, lost, "smb")
	killAt(second, lost)

	w.start(t)
	for _, l := range []string{rejected, lost} {
		evs := w.nurtured(t, l)
		rec, en := ofType(evs, "LeadRecycled"), ofType(evs, "NurtureEnrolled")
		if len(rec) != 1 || len(en) != 1 || en[0].GetCausationId() != rec[0].GetEventId() {
			t.Fatalf("after the restart: %v", types(evs))
		}
		if err := lifecycle.Check(stateOf(last(evs))); err != nil {
			t.Fatal(err)
		}
	}
	w.settle(t, group)
	for _, l := range []string{rejected, lost} {
		if evs := w.events(t, l); len(ofType(evs, "NurtureEnrolled")) != 1 || len(ofType(evs, "LeadRecycled")) != 1 {
			t.Fatalf("written twice: %v", types(evs))
		}
	}
}
