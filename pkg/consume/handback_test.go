package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/consume"
)

// The server redelivering messages a member still holds (here the test
// naks them behind the member's back, with the reply subjects it sees the
// deliveries go out with) makes the member hand the partition back and
// take it again: every message is still handled in order, and the
// hand-back is one warning however many held messages came back.
func TestRedeliveredHeldMessagesHandBackOnce(t *testing.T) {
	n := startParts(t)
	const key = "held"
	const count = 8
	var seqs []uint64
	for i := range count {
		seqs = append(seqs, publish(t, n.JS, key, fmt.Sprint(i)))
	}
	// Every delivery passes the pull's inbox: keep each message's reply.
	spy, err := nats.Connect(n.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var mu sync.Mutex
	replies := map[uint64]string{}
	if _, err := spy.Subscribe("_INBOX.>", func(m *nats.Msg) {
		md, err := m.Metadata()
		if err != nil || m.Subject == "" || !strings.HasPrefix(m.Reply, "$JS.ACK.") {
			return
		}
		mu.Lock()
		replies[md.Sequence.Stream] = m.Reply
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}

	var warnings atomic.Int64
	cfg := config("handback")
	cfg.Logger = slog.New(&countHandler{match: "a held message was redelivered", n: &warnings})
	release := make(chan struct{})
	var j journal
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		if m.Seq == seqs[0] {
			select { // the first waits: the rest stay held behind it
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		j.add("m", m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(replies) == count
	}, "the member did not take every message")
	mu.Lock()
	for _, s := range seqs[1:] {
		if err := spy.Publish(replies[s], []byte("-NAK")); err != nil {
			t.Fatal(err)
		}
	}
	mu.Unlock()
	eventually(t, 10*time.Second, func() bool { return warnings.Load() > 0 }, "no hand-back after the redeliveries")
	close(release)
	eventually(t, 20*time.Second, func() bool { return handledAll(j.all(), map[string][]uint64{key: seqs}) },
		"handled %d of %d after the hand-back", j.len(), count)
	checkOrder(t, j.all(), map[string][]uint64{key: seqs})
	if w := warnings.Load(); w != 1 {
		t.Errorf("%d warnings for one hand-back", w)
	}
}
