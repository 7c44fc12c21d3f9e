package consume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

func seqsOf(hs []handling, key string) []uint64 {
	var out []uint64
	for _, h := range hs {
		if h.key == key {
			out = append(out, h.seq)
		}
	}
	return out
}

// A re-drive whose handling outlasts the 5 s a call to the server gets
// handles the dead message once, then the parked ones. It used to delete
// the entry last, on a context that had expired by then, and so handled
// the dead message again after the parked ones.
func TestSlowRedriveHandlesTheDeadMessageOnce(t *testing.T) {
	n := startParts(t)
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	start(t, n.JS, config("slowredrive"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return consume.Permanent(errors.New("cannot handle yet"))
		}
		j.add("m", m)
		if m.Seq == poison {
			time.Sleep(5500 * time.Millisecond)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	l1, l2 := parkTwo(t, n.JS, "K1")
	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "slowredrive", "K1", poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() bool {
		return j.len() > 3 || j.len() == 3 && len(deadLetters(t, n.JS)) == 0
	}, "re-drive not done: handled %v", func() any { return seqsOf(j.all(), "K1") })
	time.Sleep(1500 * time.Millisecond) // a retried request comes back after a second
	if got, want := seqsOf(j.all(), "K1"), []uint64{poison, l1, l2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the re-drive handled %v, want %v", got, want)
	}
}

// Parked messages whose dead letter is gone (a member died after the
// re-drive deleted the entry, before it released them) are released in
// order by the next member, and the dead message is not handled again.
func TestParkedWithoutDeadLetterAreReleased(t *testing.T) {
	n := startParts(t)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, config("orphan"), h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	l1, l2 := parkTwo(t, n.JS, "K1")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dl, err := n.JS.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := dl.GetLastMsgForSubject(ctx, "deadletter.entry.orphan.K1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.DeleteMsg(ctx, entry.Sequence); err != nil {
		t.Fatal(err)
	}
	start(t, n.JS, config("orphan"), h)
	eventually(t, 10*time.Second, func() bool { return j.len() == 2 && len(deadLetters(t, n.JS)) == 0 },
		"handled %v, dead letters %v", func() any { return seqsOf(j.all(), "K1") }, func() any { return deadLetters(t, n.JS) })
	if got, want := seqsOf(j.all(), "K1"), []uint64{l1, l2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("released %v, want %v", got, want)
	}
}

// A later message of a parked key that the server gives up on (delivered
// MaxDeliver times, here by naks, never handled) is parked behind the key's
// dead letter when its advisory comes: it used to replace the entry, and
// the first dead message was lost.
func TestAbandonedMessageWaitsBehindTheDeadLetter(t *testing.T) {
	n := startParts(t)
	cfg := config("abandoned")
	cfg.MaxDeliver = 2
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	dead := publish(t, n.JS, "K1", "poison")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == dead && broken.Load() {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, cfg, h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	later := publish(t, n.JS, "K1", "later")

	// Deliver it MaxDeliver times and nak it each time, as hand-backs do.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	durable := consume.Durable("abandoned", partitionOf("K1"), partitions)
	cons, err := n.JS.Consumer(ctx, parts, durable)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.MaxDeliver {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second), jetstream.FetchPriorityGroup("leadflow"))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			_ = m.Nak()
		}
		if got != 1 {
			t.Fatalf("pull %d got %d messages (%v)", i, got, b.Error())
		}
	}
	src, err := n.JS.Stream(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.UnpinConsumer(ctx, durable, "leadflow"); err != nil {
		t.Fatal(err)
	}

	start(t, n.JS, cfg, h) // its first pull has the server give up on it
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && dl[0].StreamSeq == dead && fmt.Sprint(dl[0].Parked) == fmt.Sprint([]uint64{later})
	}, "dead letters %+v, want seq %d dead with %d parked", func() any { return deadLetters(t, n.JS) }, dead, later)
	broken.Store(false)
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "abandoned", "K1", dead); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == 2 }, "handled %v", func() any { return seqsOf(j.all(), "K1") })
	if got, want := seqsOf(j.all(), "K1"), []uint64{dead, later}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the re-drive handled %v, want %v", got, want)
	}
}

// A message of a parked key still waiting in its worker's queue at its last
// delivery (MaxDeliver) when its member stops is parked at the hand-back: a
// nak would have the server give up on it, and nobody might hear its
// advisory.
func TestHandBackParksALastDelivery(t *testing.T) {
	n := startParts(t)
	const key = "K1"
	blocker := "B0"
	for i := 1; partitionOf(blocker) == partitionOf(key); i++ {
		blocker = fmt.Sprintf("B%d", i)
	}
	// The deliveries' reply subjects, and the most times each was delivered.
	spy, err := nats.Connect(n.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var mu sync.Mutex
	replies := map[uint64]string{}
	deliveries := map[uint64]uint64{}
	if _, err := spy.Subscribe("_INBOX.>", func(m *nats.Msg) {
		md, err := m.Metadata()
		if err != nil || !strings.HasPrefix(m.Reply, "$JS.ACK.") {
			return
		}
		mu.Lock()
		replies[md.Sequence.Stream] = m.Reply
		deliveries[md.Sequence.Stream] = max(deliveries[md.Sequence.Stream], md.NumDelivered)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	delivered := func(seq uint64) uint64 {
		mu.Lock()
		defer mu.Unlock()
		return deliveries[seq]
	}

	cfg := config("lastdelivery")
	cfg.Workers = 1 // the blocker keeps the key's message in the queue
	cfg.MaxDeliver = 3
	cfg.ShutdownGrace = 100 * time.Millisecond
	var broken, blocking, blocked atomic.Bool
	broken.Store(true)
	blocking.Store(true)
	var j journal
	dead := publish(t, n.JS, key, "poison")
	h := func(ctx context.Context, m consume.Msg) error {
		switch {
		case m.Seq == dead && broken.Load():
			return consume.Permanent(errors.New("bad"))
		case m.Key == blocker && blocking.Load():
			blocked.Store(true)
			<-ctx.Done()
			return ctx.Err()
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, cfg, h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	publish(t, n.JS, blocker, "block")
	eventually(t, 10*time.Second, blocked.Load, "the blocker did not start")
	x := publish(t, n.JS, key, "x")
	eventually(t, 10*time.Second, func() bool { return delivered(x) == 1 }, "x not delivered")
	// A nak behind the member's back: the server delivers x again, the
	// member hands the partition back (naks x) and takes it again.
	mu.Lock()
	err = spy.Publish(replies[x], []byte("-NAK"))
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return delivered(x) == uint64(cfg.MaxDeliver) }, "x delivered %d times", func() any { return delivered(x) })
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if dl := deadLetters(t, n.JS); len(dl) != 1 || dl[0].StreamSeq != dead || fmt.Sprint(dl[0].Parked) != fmt.Sprint([]uint64{x}) {
		t.Fatalf("after the stop: dead letters %+v, want seq %d dead with %d parked", dl, dead, x)
	}

	broken.Store(false)
	blocking.Store(false)
	start(t, n.JS, cfg, h)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "lastdelivery", key, dead); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(seqsOf(j.all(), key)) == 2 }, "handled %v", func() any { return seqsOf(j.all(), key) })
	if got, want := seqsOf(j.all(), key), []uint64{dead, x}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the re-drive handled %v, want %v", got, want)
	}
}

// A re-drive that ends while the member reloads its parked keys (here on a
// partition's first delivery) is not undone by the reload: the key's next
// message is handled, not parked behind a dead letter that is gone.
func TestReloadKeepsARedriveThatEndedMeanwhile(t *testing.T) {
	n := startParts(t)
	const key = "K1"
	other := "Z0" // on a partition that has had no delivery yet
	for i := 1; partitionOf(other) == partitionOf(key); i++ {
		other = fmt.Sprintf("Z%d", i)
	}
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, key, "poison")
	start(t, n.JS, config("reload"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	l1 := publish(t, n.JS, key, "l1")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 1
	}, "not parked")

	listed, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer consume.SetParkedListed(func() {
		first := false
		once.Do(func() { first = true })
		if first {
			close(listed)
			select {
			case <-proceed:
			case <-time.After(10 * time.Second):
			}
		}
	})()
	publish(t, n.JS, other, "z")
	select {
	case <-listed:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload on the first delivery")
	}
	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "reload", key, poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(seqsOf(j.all(), key)) == 2 && len(deadLetters(t, n.JS)) == 0 },
		"re-drive not done: handled %v", func() any { return seqsOf(j.all(), key) })
	close(proceed)
	eventually(t, 10*time.Second, func() bool { return len(seqsOf(j.all(), other)) == 1 }, "the other key not handled")

	l2 := publish(t, n.JS, key, "l2")
	eventually(t, 5*time.Second, func() bool { return len(seqsOf(j.all(), key)) == 3 },
		"l2 not handled; dead letters %+v", func() any { return deadLetters(t, n.JS) })
	if got, want := seqsOf(j.all(), key), []uint64{poison, l1, l2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
}

// parkTwo publishes two more messages of key, whose message is the one
// dead letter, and waits until both are parked behind it.
func parkTwo(t *testing.T, js jetstream.JetStream, key string) (l1, l2 uint64) {
	t.Helper()
	l1, l2 = publish(t, js, key, "l1"), publish(t, js, key, "l2")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, js)
		return len(dl) == 1 && len(dl[0].Parked) == 2
	}, "not parked")
	return l1, l2
}
