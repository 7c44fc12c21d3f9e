package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/testenv"
)

const leads = "LEADS"

// startLeads starts an embedded JetStream with a lead stream shaped like the
// real one (file storage, no delete or purge).
func startLeads(t testing.TB) *testenv.NATS {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name:       leads,
		Subjects:   []string{"lead.>"},
		Storage:    jetstream.FileStorage,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return n
}

// restart restarts the server and waits until JetStream answers: right
// after testenv's Restart the first API request is often lost.
func restart(t testing.TB, n *testenv.NATS) {
	t.Helper()
	n.Restart(t)
	eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := n.JS.AccountInfo(ctx)
		return err == nil
	}, "JetStream not answering after restart")
}

func publish(t testing.TB, js jetstream.JetStream, subject, data string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subject, []byte(data))
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// quiet keeps expected dead-letter and retry logs out of the test output;
// CONSUME_TEST_LOG=1 shows them.
var quiet = func() *slog.Logger {
	if os.Getenv("CONSUME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}()

// running is one Run in the background.
type running struct {
	cancel   context.CancelFunc
	returned chan struct{} // closed when Run has returned err
	err      error
}

// start runs consume.Run until stop is called or the test ends.
func start(t testing.TB, js jetstream.JetStream, cfg consume.Config, h consume.Handler) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, returned: make(chan struct{})}
	go func() {
		r.err = consume.Run(ctx, js, cfg, h)
		close(r.returned)
	}()
	t.Cleanup(func() { _ = r.stopWithin(10 * time.Second) })
	return r
}

// stop cancels Run and returns its result; it fails the test if Run does not
// return within d.
func (r *running) stop(t testing.TB, d time.Duration) error {
	t.Helper()
	err := r.stopWithin(d)
	if errors.Is(err, errStillRunning) {
		t.Fatalf("Run did not return within %v of cancel", d)
	}
	return err
}

var errStillRunning = errors.New("still running")

func (r *running) stopWithin(d time.Duration) error {
	r.cancel()
	return r.wait(d)
}

// wait returns Run's result, or errStillRunning if Run has not returned
// within d (d <= 0: at once).
func (r *running) wait(d time.Duration) error {
	if d <= 0 {
		select {
		case <-r.returned:
			return r.err
		default:
			return errStillRunning
		}
	}
	select {
	case <-r.returned:
		return r.err
	case <-time.After(d):
		return errStillRunning
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{d}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func deadLetters(t testing.TB, js jetstream.JetStream, durable string) []consume.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dls, err := consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream, durable)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	return dls
}

func consumerInfo(t testing.TB, js jetstream.JetStream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, leads, durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", durable, err)
	}
	return c.CachedInfo()
}

// settled reports whether the durable has nothing pending and nothing unacked.
func settled(t testing.TB, js jetstream.JetStream, durable string) func() bool {
	return func() bool {
		ci := consumerInfo(t, js, durable)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	}
}

// journal records what a handler saw.
type journal struct {
	mu   sync.Mutex
	msgs []consume.Msg
}

func (j *journal) add(m consume.Msg) {
	j.mu.Lock()
	j.msgs = append(j.msgs, m)
	j.mu.Unlock()
}

func (j *journal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.msgs)
}

func (j *journal) all() []consume.Msg {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]consume.Msg(nil), j.msgs...)
}

// seqs lists the sequences seen, in order, optionally for one subject.
func (j *journal) seqs(subject string) []uint64 {
	var out []uint64
	for _, m := range j.all() {
		if subject == "" || m.Subject == subject {
			out = append(out, m.Seq)
		}
	}
	return out
}

func (j *journal) count(seq uint64) int {
	n := 0
	for _, m := range j.all() {
		if m.Seq == seq {
			n++
		}
	}
	return n
}

func fastBackoff(int) time.Duration { return time.Millisecond }

func lead(i int) string { return fmt.Sprintf("lead.L%03d", i) }
