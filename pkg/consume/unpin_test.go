package consume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

// A member that stops cleanly unpins every partition it held, idle ones
// too. The server renews a pin at each pull of its holder, so an idle
// partition stays pinned to its owner; it used to unpin only after a recent
// delivery, and the next owner waited out PinnedTTL.
func TestCleanStopUnpinsIdlePartitions(t *testing.T) {
	n := startParts(t)
	cfg := config("unpin")
	// The default TTL, not the tests' 3 s: a member counts the pin as its
	// own while its pulls renewed it within half the TTL, and on a loaded
	// machine (make test runs packages at once) a pull can stall past 1.5 s.
	cfg.PinnedTTL = 6 * time.Second
	var j journal
	run := start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		return nil
	})
	// One key a partition, so the member holds every pin.
	keys := map[int]string{}
	for i := 0; len(keys) < partitions; i++ {
		k := fmt.Sprintf("K%d", i)
		if _, ok := keys[partitionOf(k)]; !ok {
			keys[partitionOf(k)] = k
			publish(t, n.JS, k, "x")
		}
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == partitions }, "handled %d of %d", j.len(), partitions)
	time.Sleep(cfg.PinnedTTL + 500*time.Millisecond) // idle past PinnedTTL
	if p := pinnedParts(t, n.JS, "unpin"); len(p) != partitions {
		t.Fatalf("idle partitions pinned: %v, want all %d (the owner's pulls keep them)", p, partitions)
	}
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if p := pinnedParts(t, n.JS, "unpin"); len(p) != 0 {
		t.Fatalf("still pinned after a clean stop: %v", p)
	}
}

// pinnedParts lists group's partitions whose durable has a client pinned.
func pinnedParts(t testing.TB, js jetstream.JetStream, group string) (out []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for p := range partitions {
		c, err := js.Consumer(ctx, parts, consume.Durable(group, p, partitions))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range info.PriorityGroups {
			if g.PinnedClientID != "" {
				out = append(out, fmt.Sprintf("p%d", p))
			}
		}
	}
	return out
}
