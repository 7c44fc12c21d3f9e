package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

// TestMain doubles as an intake process: with INTAKE_CHILD_NATS set, the
// test binary serves intake against that server (keys from
// INTAKE_CHILD_KEYS, "master blind"), prints "listening <addr>", and with
// INTAKE_CHILD_STALL set stops for good right after storing a LeadErased,
// before shredding, printing "stalled <lead>".
func TestMain(m *testing.M) {
	if url := os.Getenv("INTAKE_CHILD_NATS"); url != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		master, blind, _ := strings.Cut(os.Getenv("INTAKE_CHILD_KEYS"), " ")
		cfg := Config{Addr: "127.0.0.1:0", NATSURL: url, Stream: "LEADFLOW", Replicas: 1, MasterKey: master, BlindKey: blind,
			Grace: time.Second, finishEraseAfter: 2 * time.Second}
		if os.Getenv("INTAKE_CHILD_STALL") != "" {
			cfg.afterErased = func(lead string) {
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

// An intake killed (SIGKILL) after it stored a lead's LeadErased and
// before it shredded the lead's keys and released its identities, whose
// caller never asks again: the erasure's timer has another intake finish
// it.
func TestErasureKilledBeforeShreddingIsFinished(t *testing.T) {
	e := start(t) // the replica that lives on
	id := e.capture(t, withExt(lead("gone@kill.example"), "crm-gone")).GetLeadId()
	sealed := e.timeline(t, id)[0].GetLeadCaptured().GetSealedPersonal()

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "INTAKE_CHILD_NATS="+e.nats.Server.URL(),
		"INTAKE_CHILD_KEYS="+e.cfg.MasterKey+" "+e.cfg.BlindKey, "INTAKE_CHILD_STALL=1")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	lines := make(chan []string, 4)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.Fields(sc.Text())
		}
	}()
	next := func(want string) string {
		t.Helper()
		select {
		case f := <-lines:
			if len(f) != 2 || f[0] != want {
				t.Fatalf("child said %q, want %s", f, want)
			}
			return f[1]
		case <-time.After(30 * time.Second):
			t.Fatalf("child did not say %s", want)
		}
		return ""
	}
	conn, err := grpc.NewClient(next("listening"), e.nats.TLS.Dial())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { // answered never: the child stops before it answers
		_, _ = intakev1.NewIntakeServiceClient(conn).EraseLead(context.Background(), &intakev1.EraseLeadRequest{LeadId: id, Reason: "request"})
	}()
	if got := next("stalled"); got != id {
		t.Fatalf("stalled at %s, want %s", got, id)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
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
