package consume_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
)

// keyIn is the first key named prefix-<i> whose partition is p.
func keyIn(prefix string, p int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s-%d", prefix, i); partitionOf(k) == p {
			return k
		}
	}
}

// A member that hands partitions back while handlers run past the pin's
// TTL (here under a ShutdownGrace longer than it) stops them in time: what
// it holds is back on the server, in order, before its pin lapses, so the
// next owner handles no key's newer message before its older ones. Each
// partition has a slow key and a quick key queued behind it on the same
// worker (keys of one partition share a worker in the test's hashing).
func TestHandBackEndsBeforeThePinLapses(t *testing.T) {
	hs, want := handOverBehindSlowKeys(t, "slowhandover", func(ctx context.Context) error {
		select {
		case <-time.After(8 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	checkOrder(t, hs, want)
}

// A handler that ignores its context past the pin TTL keeps only its own
// key's message: the messages queued behind it, of other keys, are not
// kept leased while the release waits for it, so they are back on the
// server before the pin lapses and the next owner handles them before
// those keys' newer messages.
func TestAHandlerPastTheGraceKeepsNoOtherKeysMessages(t *testing.T) {
	hs, want := handOverBehindSlowKeys(t, "stubborn", func(context.Context) error {
		time.Sleep(8 * time.Second) // its context cancelled or not
		return nil
	})
	// The slow keys' order is theirs to keep (docs/architecture.md): the
	// quick keys' is checked.
	hs = slices.DeleteFunc(hs, func(h handling) bool { return h.key[0] != 'Q' })
	maps.DeleteFunc(want, func(key string, _ []uint64) bool { return key[0] != 'Q' })
	checkOrder(t, hs, want)
}

// handOverBehindSlowKeys has member a take every partition, each with a
// slow key (its first handling runs slow) and a quick key queued behind
// it on the same worker (keys of one partition share a worker in the
// test's hashing), under a ShutdownGrace past PinnedTTL (3 s); then b
// joins, and once a's pins have lapsed each quick key gets a newer
// message. It returns every handling, in order, and the messages sent.
func handOverBehindSlowKeys(t *testing.T, group string, slow func(context.Context) error) ([]handling, map[string][]uint64) {
	n := startParts(t)
	cfg := config(group)
	cfg.ShutdownGrace = 10 * time.Second
	var (
		j       journal
		slowed  sync.Map // seq -> true once its slow first handling began
		started atomic.Int32
	)
	handler := func(member string) consume.Handler {
		return func(ctx context.Context, m consume.Msg) error {
			if _, again := slowed.LoadOrStore(m.Seq, true); !again && m.Key[0] == 'S' {
				started.Add(1)
				if err := slow(ctx); err != nil {
					return err
				}
			}
			j.add(member, m)
			return nil
		}
	}
	want := map[string][]uint64{}
	for p := range partitions {
		s, q := keyIn("S", p), keyIn("Q", p)
		want[s] = append(want[s], publish(t, n.JS, s, "slow"))
		want[q] = append(want[q], publish(t, n.JS, q, "1"))
	}
	_, jsA := n.Connect(t)
	start(t, jsA, cfg, handler("a"))
	eventually(t, 20*time.Second, func() bool { return started.Load() == partitions }, "%d of %d slow handlers began", started.Load(), partitions)
	_, jsB := n.Connect(t)
	start(t, jsB, cfg, handler("b"))
	time.Sleep(cfg.PinnedTTL + 2*time.Second)
	for p := range partitions {
		q := keyIn("Q", p)
		want[q] = append(want[q], publish(t, n.JS, q, "2"))
	}
	eventually(t, 40*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d messages", j.len())
	by := map[string]int{}
	for _, h := range j.all() {
		by[h.member]++
	}
	if by["b"] == 0 {
		t.Fatalf("b took no partition: nothing was handed over (%v)", by)
	}
	return j.all(), want
}

// A handler that times out on every attempt for a reason of its own ends
// in a dead letter once unanswered attempts have been waited out, and the
// keys behind it go on.
func TestUnansweredWaitIsBounded(t *testing.T) {
	defer consume.SetUnansweredFor(time.Second)()
	n := startParts(t)
	cfg := config("bounded")
	cfg.Attempts = 2
	poison := publish(t, n.JS, "poison", "x")
	want := publishMany(t, n.JS, 10, 2)
	var j journal
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		if m.Key == "poison" {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			defer cancel()
			<-ctx.Done()
			return fmt.Errorf("apply: %w", ctx.Err())
		}
		j.add("m", m)
		return nil
	})
	eventually(t, 30*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "the message that always times out was never dead-lettered")
	if dl := deadLetters(t, n.JS)[0]; dl.Key != "poison" || dl.StreamSeq != poison {
		t.Fatalf("dead letter %+v, want poison seq %d", dl, poison)
	}
	eventually(t, 30*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of 20 other messages", j.len())
}
