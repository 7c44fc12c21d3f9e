package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

// A member whose progress signals stop (starved of CPU) while its pulls go
// on keeps its pin, so the server's copies of what it holds expire and
// come back to it alone: it keeps its partitions, and handles every
// message once and in order. One slow handler holds the only worker
// three AckWaits long, so everything else is held past its AckWait.
func TestLateProgressKeepsThePartitions(t *testing.T) {
	n := startParts(t)
	consume.PauseProgress(true)
	t.Cleanup(func() { consume.PauseProgress(false) })
	var handBacks atomic.Int64
	cfg := config("starved")
	cfg.Workers = 1
	cfg.Logger = slog.New(&countHandler{match: "handing the partition back", n: &handBacks})
	want := publishMany(t, n.JS, 10, 5)

	var j journal
	var slow atomic.Bool
	start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		if slow.CompareAndSwap(false, true) {
			time.Sleep(3 * cfg.AckWait)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of %d", j.len(), 50)
	time.Sleep(2 * cfg.AckWait) // a copy expired and redelivered would be handled now
	if r := checkOrder(t, j.all(), want); r > 0 {
		t.Errorf("%d messages handled twice", r)
	}
	if h := handBacks.Load(); h > 0 {
		t.Errorf("%d partitions handed back while the pin held", h)
	}
}

// countHandler counts log records whose message contains match.
type countHandler struct {
	match string
	n     *atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// A member whose pin the server gives to another client (an unpin by
// someone else, or a new consumer leader that forgot it) hands back what
// it holds and leaves the new pin alone: the other client gets those
// messages, and the member handles none of them.
func TestLostPinHandsBackWhatItHolds(t *testing.T) {
	n := startParts(t)
	cfg := config("pinloss")
	cfg.Workers = 1
	var noticed atomic.Int64
	cfg.Logger = slog.New(&countHandler{match: "pinned another client", n: &noticed})
	const key = "held"
	other := samePartition(key)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, publish(t, n.JS, key, strconv.Itoa(i)))
	}
	var j journal
	unblock := make(chan struct{})
	var once sync.Once
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		j.add("member", m)
		if m.Seq == seqs[0] {
			select {
			case <-unblock:
			case <-ctx.Done():
			}
		}
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "the first message was not handled")
	time.Sleep(300 * time.Millisecond) // the member holds the other four behind it

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	durable := consume.Durable("pinloss", partitionOf(key), partitions)
	stream, err := n.JS.Stream(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.UnpinConsumer(ctx, durable, consume.PinGroup); err != nil {
		t.Fatal(err)
	}
	cons, err := n.JS.Consumer(ctx, parts, durable)
	if err != nil {
		t.Fatal(err)
	}
	// A message of another key in the partition makes the server pin one
	// waiting pull; the test keeps pulling, so it is the test's.
	publish(t, n.JS, other, "x")
	want := map[uint64]bool{seqs[1]: true, seqs[2]: true, seqs[3]: true, seqs[4]: true}
	var got []uint64
	for ctx.Err() == nil && len(want) > 0 {
		b, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond), jetstream.FetchPriorityGroup(consume.PinGroup))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, md.Sequence.Stream)
			delete(want, md.Sequence.Stream)
			_ = m.Ack()
			if keyOf(m.Subject()) == other {
				// Pinned: once the member's next pull is refused, let its
				// handler end. (Until then it cannot know, and goes on.)
				eventually(t, 5*time.Second, func() bool { return noticed.Load() > 0 }, "the member never noticed that its pin moved")
				once.Do(func() { close(unblock) })
			}
		}
		if err := b.Error(); err != nil {
			t.Fatalf("the test's pull (pinned after the unpin): %v; the member took the pin back", err)
		}
	}
	if len(want) > 0 {
		t.Fatalf("the test's pull got %v, not the member's held %v", got, seqs[1:])
	}
	// The member's release left the pin alone: the test still gets the
	// partition's next message.
	last := publish(t, n.JS, other, "y")
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second), jetstream.FetchPriorityGroup(consume.PinGroup))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if md, _ := m.Metadata(); md != nil && md.Sequence.Stream == last {
			last = 0
		}
		_ = m.Ack()
	}
	if err := b.Error(); err != nil || last != 0 {
		t.Fatalf("the test's next pull: %v, seq %d not delivered: the member's release unpinned the test", err, last)
	}
	time.Sleep(cfg.AckWait)
	for _, h := range j.all()[1:] {
		if h.key == key {
			t.Errorf("the member handled seq %d after losing its pin", h.seq)
		}
	}
}

// samePartition returns a key other than key in key's partition.
func samePartition(key string) string {
	for i := 0; ; i++ {
		k := "K" + strconv.Itoa(i)
		if partitionOf(k) == partitionOf(key) {
			return k
		}
	}
}

func partitionOf(key string) int {
	var p int
	fmt.Sscanf(subject(key), "part.%d.", &p)
	return p
}

// A partition whose pulls keep coming back empty while its durable has
// messages waiting (here the durable is paused, as an operator may) is
// reported: nothing else would show that stall.
func TestStallIsReported(t *testing.T) {
	n := startParts(t)
	var stalls atomic.Int64
	cfg := config("stall")
	cfg.Logger = slog.New(&countHandler{match: "pulls come back empty while messages wait", n: &stalls})
	var j journal
	start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		return nil
	})
	const key = "stalled"
	publish(t, n.JS, key, "0")
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "the first message was not handled")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	durable := consume.Durable("stall", partitionOf(key), partitions)
	if _, err := n.JS.PauseConsumer(ctx, parts, durable, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	publish(t, n.JS, key, "1")
	eventually(t, 4*cfg.PinnedTTL, func() bool { return stalls.Load() > 0 }, "no stall reported")
	if j.len() != 1 {
		t.Fatalf("handled %d messages from a paused durable", j.len())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.JS.ResumeConsumer(ctx, parts, durable); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == 2 }, "the waiting message was not handled after the resume")
}
