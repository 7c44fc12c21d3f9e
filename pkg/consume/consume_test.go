package consume_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

// Many subjects, interleaved, handled by several workers with random delays:
// each subject's messages are still handled in stream order, all of them, once.
func TestOrderPerSubject(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	const subjects, perSubject = 50, 40
	want := map[string][]uint64{}
	for i := range perSubject {
		for s := range subjects {
			subj := lead(s)
			want[subj] = append(want[subj], publish(t, n.JS, subj, fmt.Sprint(i)))
		}
	}

	var j journal
	r := start(t, n.JS, consume.Config{Stream: leads, Durable: "order", Workers: 8}, func(ctx context.Context, m consume.Msg) error {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		j.add(m)
		return nil
	})
	eventually(t, 15*time.Second, func() bool { return j.len() >= subjects*perSubject }, "handled %d of %d", j.len(), subjects*perSubject)
	eventually(t, 5*time.Second, settled(t, n.JS, "order"), "consumer not settled: %+v", consumerInfo(t, n.JS, "order"))
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := j.len(); got != subjects*perSubject {
		t.Errorf("handled %d messages, want %d (none twice)", got, subjects*perSubject)
	}
	for subj, seqs := range want {
		if got := j.seqs(subj); !slices.Equal(got, seqs) {
			t.Errorf("%s handled in order %v, want %v", subj, got, seqs)
		}
	}
}

// A message that fails twice and then succeeds is handled once, in place:
// the subject's later messages wait for it, and nothing is dead-lettered.
func TestTransientFailure(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	a1 := publish(t, n.JS, "lead.A", "a1")
	publish(t, n.JS, "lead.B", "b1")
	a2 := publish(t, n.JS, "lead.A", "a2")
	a3 := publish(t, n.JS, "lead.A", "a3")

	var calls atomic.Int32
	var j journal
	start(t, n.JS, consume.Config{Stream: leads, Durable: "transient", Backoff: fastBackoff}, func(ctx context.Context, m consume.Msg) error {
		if m.Seq == a1 && calls.Add(1) <= 2 {
			return errors.New("database briefly away")
		}
		j.add(m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return j.len() >= 4 }, "handled %d of 4", j.len())
	eventually(t, 5*time.Second, settled(t, n.JS, "transient"), "consumer not settled")

	if got := calls.Load(); got != 3 {
		t.Errorf("a1 handler calls = %d, want 3", got)
	}
	if got, want := j.seqs("lead.A"), []uint64{a1, a2, a3}; !slices.Equal(got, want) {
		t.Errorf("lead.A handled %v, want %v", got, want)
	}
	for _, m := range j.all() {
		if m.Seq == a1 && m.Delivered != 1 {
			t.Errorf("a1 Delivered = %d, want 1 (retried in-process, not redelivered)", m.Delivered)
		}
	}
	if dls := deadLetters(t, n.JS, "transient"); len(dls) != 0 {
		t.Errorf("dead letters = %+v, want none", dls)
	}
}

// A message that always fails becomes exactly one dead letter and is not
// redelivered; a Permanent error dead-letters after one attempt; other
// messages keep flowing. Then re-drive: a failing re-drive updates the dead
// letter, a succeeding one hands the original message to the handler and
// removes the dead letter.
func TestPoisonAndRedrive(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	poison := publish(t, n.JS, "lead.P", "poison-data")
	p2 := publish(t, n.JS, "lead.P", "p2")
	perm := publish(t, n.JS, "lead.Q", "perm-data")
	for i := range 10 {
		publish(t, n.JS, "lead.R", fmt.Sprint(i))
	}

	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	calls := map[uint64]int{}
	var j journal
	const ackWait = 400 * time.Millisecond
	cfg := consume.Config{Stream: leads, Durable: "poison", Attempts: 3, Backoff: fastBackoff, AckWait: ackWait}
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		mu.Lock()
		calls[m.Seq]++
		mu.Unlock()
		if failing.Load() {
			switch m.Seq {
			case poison:
				return fmt.Errorf("boom at %d", m.Seq)
			case perm:
				return consume.Permanent(errors.New("unreadable payload"))
			}
		}
		j.add(m)
		return nil
	})
	callsOf := func(seq uint64) int {
		mu.Lock()
		defer mu.Unlock()
		return calls[seq]
	}

	var dls []consume.DeadLetter
	eventually(t, 10*time.Second, func() bool {
		dls = deadLetters(t, n.JS, "poison")
		return len(dls) == 2 && j.len() == 11
	}, "dead letters %+v, handled %d of 11", dls, j.len())
	byStreamSeq := func(dls []consume.DeadLetter) map[uint64]consume.DeadLetter {
		m := map[uint64]consume.DeadLetter{}
		for _, dl := range dls {
			m[dl.StreamSeq] = dl
		}
		return m
	}
	got := byStreamSeq(dls)
	pd, qd := got[poison], got[perm]
	if pd.Subject != "lead.P" || pd.Stream != leads || pd.Durable != "poison" || pd.Attempts != 3 ||
		pd.Error != fmt.Sprintf("boom at %d", poison) || pd.At.IsZero() || pd.Seq == 0 {
		t.Errorf("poison dead letter = %+v", pd)
	}
	if qd.Subject != "lead.Q" || qd.Attempts != 1 || qd.Error != "unreadable payload" {
		t.Errorf("permanent dead letter = %+v", qd)
	}
	if !slices.Contains(j.seqs("lead.P"), p2) {
		t.Errorf("p2 after the poison message was not handled")
	}

	// Not redelivered: wait several AckWaits and count calls again.
	time.Sleep(3 * ackWait)
	if c := callsOf(poison); c != 3 {
		t.Errorf("poison handler calls = %d, want 3 (no redelivery after dead-lettering)", c)
	}
	if c := callsOf(perm); c != 1 {
		t.Errorf("permanent handler calls = %d, want 1", c)
	}
	if ci := consumerInfo(t, n.JS, "poison"); ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Errorf("consumer ack pending %d, pending %d; want 0, 0", ci.NumAckPending, ci.NumPending)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A re-drive that fails again replaces the dead letter (new Seq, same message).
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "poison", qd.Seq); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	eventually(t, 10*time.Second, func() bool {
		dls = deadLetters(t, n.JS, "poison")
		return len(dls) == 2 && byStreamSeq(dls)[perm].Seq != qd.Seq
	}, "dead letter not replaced after failing re-drive: %+v", dls)
	if c := callsOf(perm); c != 2 {
		t.Errorf("permanent handler calls after re-drive = %d, want 2", c)
	}
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "poison", qd.Seq); !errors.Is(err, consume.ErrNotFound) {
		t.Errorf("Redrive of a replaced dead letter = %v, want ErrNotFound", err)
	}

	// Fixed: re-drive hands the original message over and the dead letter goes.
	failing.Store(false)
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "poison", pd.Seq); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	eventually(t, 10*time.Second, func() bool { return j.count(poison) == 1 }, "re-driven message not handled")
	for _, m := range j.all() {
		if m.Seq == poison && (m.Subject != "lead.P" || string(m.Data) != "poison-data" || m.Stream != leads || m.Time.IsZero()) {
			t.Errorf("re-driven message = %+v", m)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		dls = deadLetters(t, n.JS, "poison")
		_, still := byStreamSeq(dls)[poison]
		return len(dls) == 1 && !still
	}, "dead letter still listed after successful re-drive: %+v", dls)

	// Handled requests are removed from the dead-letter stream.
	eventually(t, 5*time.Second, func() bool {
		s, err := n.JS.Stream(ctx, consume.DefaultDeadLetterStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("deadletter.redrive.>"))
		if err != nil {
			t.Fatal(err)
		}
		return len(info.State.Subjects) == 0
	}, "re-drive requests left in the dead-letter stream")

	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "poison", 999999); !errors.Is(err, consume.ErrNotFound) {
		t.Errorf("Redrive of an unknown dead letter = %v, want ErrNotFound", err)
	}
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "someone-else", byStreamSeq(dls)[perm].Seq); !errors.Is(err, consume.ErrNotFound) {
		t.Errorf("Redrive of another durable's dead letter = %v, want ErrNotFound", err)
	}
}

// Stopping mid-stream and restarting the server loses nothing, and messages
// acked before the stop are not handled again.
func TestRestartLosesNothing(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	const total, batch = 500, 64
	for i := range total {
		publish(t, n.JS, lead(i%25), fmt.Sprint(i))
	}
	cfg := consume.Config{Stream: leads, Durable: "restart", FetchBatch: batch}

	var mu sync.Mutex
	handled := map[uint64]int{}
	count := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := func(_ context.Context, m consume.Msg) error {
		time.Sleep(50 * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		handled[m.Seq]++
		if count++; count == 200 {
			cancel()
		}
		return nil
	}
	cfg.Logger = quiet
	if err := consume.Run(ctx, n.JS, cfg, h); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	mu.Lock()
	first := count
	mu.Unlock()
	if first < 200 || first >= total {
		t.Fatalf("first Run handled %d messages, want 200 and a few in flight", first)
	}

	restart(t, n)
	r := start(t, n.JS, cfg, h)
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	deadline := time.Now().Add(15 * time.Second)
	for distinct() != total {
		if err := r.wait(0); !errors.Is(err, errStillRunning) {
			t.Fatalf("second Run returned %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d distinct of %d; consumer %+v", distinct(), total, consumerInfo(t, n.JS, "restart"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, 5*time.Second, settled(t, n.JS, "restart"), "consumer not settled")
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq := uint64(1); seq <= total; seq++ {
		if handled[seq] == 0 {
			t.Errorf("message %d never handled", seq)
		}
	}
	if count > total+batch {
		t.Errorf("handled %d times in all, want at most %d (only messages in flight at the stop may repeat)", count, total+batch)
	}
	t.Logf("first run %d, in all %d handler calls for %d messages", first, count, total)
}

// Run rides out a server restart: it keeps pulling once the client has
// reconnected, and every message is handled.
func TestServerRestartWhileRunning(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	for i := range 100 {
		publish(t, n.JS, lead(i%10), fmt.Sprint(i))
	}
	var mu sync.Mutex
	handled := map[uint64]bool{}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	r := start(t, n.JS, consume.Config{Stream: leads, Durable: "ride"}, func(_ context.Context, m consume.Msg) error {
		mu.Lock()
		handled[m.Seq] = true
		mu.Unlock()
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return count() == 100 }, "handled %d of 100 before restart", count())
	restart(t, n)
	for i := range 100 {
		publish(t, n.JS, lead(i%10), fmt.Sprint(i))
	}
	eventually(t, 15*time.Second, func() bool { return count() == 200 }, "handled %d of 200 after restart", count())
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// A process that dies while handling a message: its message comes back after
// AckWait, to the next Run, as a second delivery.
func TestCrashRedelivery(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	target := publish(t, n.JS, "lead.C", "stuck")
	nc, js := n.Connect(t)

	started := make(chan struct{})
	cfg := consume.Config{Stream: leads, Durable: "crash", AckWait: 500 * time.Millisecond, ShutdownGrace: time.Millisecond}
	first := start(t, js, cfg, func(ctx context.Context, m consume.Msg) error {
		close(started)
		<-ctx.Done() // blocks until Run gives up on it
		return ctx.Err()
	})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	nc.Close() // the process dies: no ack, no nak
	if err := first.stop(t, 5*time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("first Run after its connection closed = %v, want nil or ErrConnectionClosed", err)
	}

	cfg.AckWait = 300 * time.Millisecond
	var j journal
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		j.add(m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return j.len() >= 1 }, "message not redelivered")
	if m := j.all()[0]; m.Seq != target || m.Delivered != 2 || string(m.Data) != "stuck" {
		t.Errorf("redelivered %+v, want seq %d delivered 2", m, target)
	}
}

// On cancel, a handler that does not finish within the grace is cancelled and
// its message, and the ones queued behind it, are handed back at once (not
// after AckWait), and come back in order.
func TestShutdownHandsBack(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	target := publish(t, n.JS, "lead.S", "slow")
	later := []uint64{publish(t, n.JS, "lead.S", "s2"), publish(t, n.JS, "lead.S", "s3")}

	started := make(chan struct{})
	cfg := consume.Config{Stream: leads, Durable: "graceful", ShutdownGrace: 20 * time.Millisecond}
	first := start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		if m.Seq == target {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		t.Errorf("message %d handled while %d is in flight", m.Seq, target)
		return nil
	})
	<-started
	begin := time.Now()
	if err := first.stop(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	t.Logf("Run returned %v after cancel", time.Since(begin))

	var j journal
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		j.add(m)
		return nil
	})
	// Default AckWait is 30s: seeing it within 5s means it was handed back.
	eventually(t, 5*time.Second, func() bool { return j.len() >= 3 }, "handed-back messages not redelivered: %d of 3", j.len())
	msgs := j.all()
	if msgs[0].Seq != target || msgs[0].Delivered != 2 {
		t.Errorf("first redelivery %+v, want seq %d delivered 2", msgs[0], target)
	}
	if got, want := j.seqs("lead.S"), append([]uint64{target}, later...); !slices.Equal(got, want) {
		t.Errorf("lead.S handled %v, want %v", got, want)
	}
}

// A message whose process keeps dying is given up on by the server after
// MaxDeliver; a running Run dead-letters it instead of letting it sit unacked.
func TestMaxDeliverDeadLetters(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	target := publish(t, n.JS, "lead.M", "crashes-the-process")
	nc, js := n.Connect(t)

	started := make(chan struct{})
	cfg := consume.Config{Stream: leads, Durable: "maxdeliver", MaxDeliver: 1, AckWait: time.Second, ShutdownGrace: time.Millisecond}
	first := start(t, js, cfg, func(ctx context.Context, m consume.Msg) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	nc.Close() // dies on its last allowed delivery

	// The server gives up once AckWait has passed; the advisory it sends then
	// is not stored, so the replacement must be running by that time.
	var j journal
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		j.add(m)
		return nil
	})
	_ = first.stop(t, 5*time.Second)
	var dls []consume.DeadLetter
	eventually(t, 10*time.Second, func() bool {
		dls = deadLetters(t, n.JS, "maxdeliver")
		return len(dls) == 1
	}, "no dead letter for the abandoned message")
	if dl := dls[0]; dl.StreamSeq != target || dl.Subject != "lead.M" || dl.Attempts != 1 || !strings.Contains(dl.Error, "MaxDeliver") {
		t.Errorf("dead letter = %+v", dl)
	}
	if j.len() != 0 {
		t.Errorf("handler saw %+v after MaxDeliver", j.all())
	}
}

// Run returns nil on cancel and leaves no goroutine behind.
func TestRunLeavesNoGoroutines(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	n := startLeads(t)
	var handled atomic.Int32
	h := func(ctx context.Context, m consume.Msg) error {
		if handled.Add(1)%10 == 0 {
			return consume.Permanent(errors.New("every tenth fails"))
		}
		return nil
	}
	cfg := consume.Config{Stream: leads, Durable: "leak", Workers: 16}
	round := func() {
		t.Helper()
		handled.Store(0)
		for i := range 100 {
			publish(t, n.JS, lead(i%10), "x")
		}
		r := start(t, n.JS, cfg, h)
		eventually(t, 10*time.Second, func() bool { return handled.Load() >= 100 }, "handled %d", handled.Load())
		dls := deadLetters(t, n.JS, "leak")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "leak", dls[0].Seq); err != nil {
			t.Fatalf("Redrive: %v", err)
		}
		eventually(t, 10*time.Second, func() bool { return handled.Load() >= 101 }, "re-drive not handled")
		if err := r.stop(t, 5*time.Second); err != nil {
			t.Fatalf("Run = %v, want nil on cancel", err)
		}
	}
	// The embedded server keeps goroutines per consumer and stream, and the
	// client one for its shared request subscription: count after a first
	// round has created them all.
	round()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	round()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Run, %d before:\n%s", runtime.NumGoroutine(), before, bytes.TrimSpace(buf))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	ok := func(context.Context, consume.Msg) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		cfg consume.Config
		h   consume.Handler
	}{
		"no stream":      {consume.Config{Durable: "d"}, ok},
		"no durable":     {consume.Config{Stream: leads}, ok},
		"dotted durable": {consume.Config{Stream: leads, Durable: "a.b"}, ok},
		"missing stream": {consume.Config{Stream: "NOPE", Durable: "d"}, ok},
		"nil handler":    {consume.Config{Stream: leads, Durable: "d"}, nil},
	} {
		if err := consume.Run(ctx, n.JS, tc.cfg, tc.h); err == nil {
			t.Errorf("%s: Run = nil, want an error", name)
		}
	}
	// A second dead-letter stream cannot take the same subjects.
	cfg := consume.Config{Stream: leads, Durable: "d", Logger: quiet}
	r := start(t, n.JS, cfg, ok)
	eventually(t, 5*time.Second, func() bool {
		_, err := n.JS.Stream(ctx, consume.DefaultDeadLetterStream)
		return err == nil
	}, "dead-letter stream not created")
	_ = r.stop(t, 5*time.Second)
	cfg.DeadLetter = "DL2"
	if err := consume.Run(ctx, n.JS, cfg, ok); err == nil {
		t.Errorf("Run with a dead-letter stream overlapping DEADLETTER = nil, want an error")
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("bad")
	p := consume.Permanent(base)
	if !consume.IsPermanent(p) || !consume.IsPermanent(fmt.Errorf("wrapped: %w", p)) || !errors.Is(p, base) {
		t.Errorf("Permanent(%v) not recognised through wrapping", base)
	}
	if consume.IsPermanent(base) || consume.Permanent(nil) != nil {
		t.Errorf("plain errors or nil marked permanent")
	}
}
