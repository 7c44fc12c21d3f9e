package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/app"
)

// TestMain doubles as an intake process: with INTAKE_CHILD_NATS set, the
// test binary serves intake against that server (keys from
// INTAKE_CHILD_KEYS, "master blind"), prints "listening <addr>", and
// stops for good at the crash point INTAKE_CHILD_STALL names (app.CrashPoint),
// printing "stalled <lead>".
func TestMain(m *testing.M) {
	if url := os.Getenv("INTAKE_CHILD_NATS"); url != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		master, blind, _ := strings.Cut(os.Getenv("INTAKE_CHILD_KEYS"), " ")
		cfg := Config{Addr: "127.0.0.1:0", NATSURL: url, Stream: "LEADFLOW", Replicas: 1, MasterKey: master, BlindKey: blind,
			Grace: time.Second, finishAfter: 2 * time.Second}
		stallAt := app.CrashPoint(os.Getenv("INTAKE_CHILD_STALL"))
		cfg.crashPoints = func(p app.CrashPoint, lead string) {
			if p == stallAt {
				fmt.Printf("stalled %s\n", lead)
				select {} // until killed
			}
		}
		ready := func(a net.Addr) { fmt.Printf("listening %s\n", a) }
		if err := run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is an intake process on e's server and keys that stops for good
// at a point (see TestMain), to be killed there.
type child struct {
	*testenv.Child
	conn *grpc.ClientConn
}

func startChild(t *testing.T, e *env, point app.CrashPoint) *child {
	t.Helper()
	c := &child{Child: testenv.StartChild(t, "INTAKE_CHILD_NATS="+e.nats.Server.URL(),
		"INTAKE_CHILD_KEYS="+e.cfg.MasterKey+" "+e.cfg.BlindKey, "INTAKE_CHILD_STALL="+string(point))}
	var err error
	if c.conn, err = grpc.NewClient(c.next(t, "listening"), e.nats.TLS.Dial()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.conn.Close() })
	return c
}

// next is the argument of the child's next line, which must say want.
func (c *child) next(t *testing.T, want string) string {
	t.Helper()
	f := strings.Fields(c.Next(t, "", 30*time.Second))
	if len(f) != 2 || f[0] != want {
		t.Fatalf("child said %q, want %s", f, want)
	}
	return f[1]
}

// killAt waits until the child stalls at lead, then kills it (SIGKILL).
func (c *child) killAt(t *testing.T, lead string) {
	t.Helper()
	if got := c.next(t, "stalled"); lead != "" && got != lead {
		t.Fatalf("stalled at %s, want %s", got, lead)
	}
	c.Kill(t)
}

// An intake killed (SIGKILL) after it stored a lead's LeadErased and
// before it shredded the lead's keys and released its identities, whose
// caller never asks again: the erasure's timer has another intake finish
// it.
func TestErasureKilledBeforeShreddingIsFinished(t *testing.T) {
	e := start(t) // the replica that lives on
	id := e.capture(t, withExt(lead("gone@kill.example"), "crm-gone")).GetLeadId()
	sealed := e.timeline(t, id)[0].GetLeadCaptured().GetSealedPersonal()

	c := startChild(t, e, app.AfterErased)
	go func() { // answered never: the child stops before it answers
		_, _ = intakev1.NewIntakeServiceClient(c.conn).EraseLead(context.Background(), &intakev1.EraseLeadRequest{LeadId: id, Reason: "request"})
	}()
	c.killAt(t, id)
	if last := e.timeline(t, id); last[len(last)-1].GetLeadErased() == nil {
		t.Fatalf("after the kill the lead's last event is %s, want LeadErased", last[len(last)-1].GetEventType())
	}

	v := e.vault(t)
	testenv.Eventually(t, time.Minute, func() bool {
		_, err := v.Open(t.Context(), id, sealed)
		return errors.Is(err, vault.ErrShredded)
	}, "the killed erasure's keys were never shredded")
	for _, r := range []*intakev1.CaptureLeadRequest{lead("gone@kill.example"), withExt(lead("other@kill.example"), "crm-gone")} {
		if got := e.capture(t, r); got.GetLeadId() == id || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			t.Fatalf("capture after the finished erasure: %v, want a new lead (identities released)", got)
		}
	}
}

// An intake killed (SIGKILL) after it stored a capture's event and before
// its follow-up writes: the caller's retry with the same key, to another
// replica, gets the first answer and writes what the capture left undone,
// the claim of a new external id and a merge candidate on both leads.
func TestCaptureKilledBeforeItsClaimsIsCompletedByItsRetry(t *testing.T) {
	e := start(t) // the replica that lives on
	byEmail := e.capture(t, lead("held@kill.example")).GetLeadId()
	byExt := e.capture(t, withExt(lead("ext@kill.example"), "crm-held")).GetLeadId()
	for _, tc := range []struct {
		name string
		req  *intakev1.CaptureLeadRequest
		// then is what must hold once the capture's follow-ups are done.
		then func(t *testing.T, got *intakev1.CaptureLeadResponse)
	}{
		{"a new external id is claimed", withExt(lead("new@kill.example"), "crm-new"),
			func(t *testing.T, got *intakev1.CaptureLeadResponse) {
				again := e.capture(t, withExt(lead("someone@kill.example"), "crm-new"))
				if again.GetLeadId() != got.GetLeadId() || again.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
					t.Errorf("a capture by the external id: %v, want a resubmission on %s", again, got.GetLeadId())
				}
			}},
		{"a merge candidate is recorded on both leads", withExt(lead("held@kill.example"), "crm-held"),
			func(t *testing.T, got *intakev1.CaptureLeadResponse) {
				if got.GetLeadId() != byExt {
					t.Fatalf("went to %s, want the external id's lead %s", got.GetLeadId(), byExt)
				}
				for _, c := range [][2]string{{byEmail, byExt}, {byExt, byEmail}} {
					var others []string
					for _, ev := range e.timeline(t, c[0]) {
						if m := ev.GetMergeCandidateFound(); m != nil {
							others = append(others, m.GetOtherLeadId())
						}
					}
					if !slices.Equal(others, []string{c[1]}) {
						t.Errorf("lead %s records merge candidates %v, want [%s]", c[0], others, c[1])
					}
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.IdempotencyKey = "retry-" + strings.ReplaceAll(tc.name, " ", "-")
			c := startChild(t, e, app.AfterStored)
			go func() { // answered never: the child stops before it answers
				_, _ = intakev1.NewIntakeServiceClient(c.conn).CaptureLead(context.Background(), tc.req)
			}()
			c.killAt(t, "")
			got := e.capture(t, tc.req)
			if !got.GetReplayed() {
				t.Fatalf("the retry was answered %v, want the first answer replayed", got)
			}
			tc.then(t, got)
		})
	}
}
