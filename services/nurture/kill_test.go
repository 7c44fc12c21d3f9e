package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
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

// child starts the test binary as a nurture process; stalled receives
// the lead ids it stopped at.
func (w *world) child(t *testing.T, stall string) (cmd *exec.Cmd, stalled <-chan string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NURTURE_CHILD_NATS="+w.nats.Server.URL(), "NURTURE_CHILD_STALL="+stall)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ch := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "stalled" {
				ch <- f[1]
			}
		}
	}()
	return cmd, ch
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

	killAt := func(stalled <-chan string, cmd *exec.Cmd, lead string) {
		t.Helper()
		select {
		case l := <-stalled:
			if l != lead {
				t.Fatalf("stalled at lead %s, want %s", l, lead)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the process did not reach lead %s's recycle", lead)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		evs := w.events(t, lead)
		if len(ofType(evs, "LeadRecycled")) != 1 || len(ofType(evs, "NurtureEnrolled")) != 0 {
			t.Fatalf("after the kill: %v", types(evs))
		}
	}
	first, stalled := w.child(t, "LeadRecycled")
	w.reject(t, rejected, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	killAt(stalled, first, rejected)

	// The second process takes the partitions over (after the dead
	// member's TTL and pin), gets the rejection again and enrols.
	second, stalled := w.child(t, "LeadRecycled")
	w.nurtured(t, rejected)
	w.lose(t, lost, "smb")
	killAt(stalled, second, lost)

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
