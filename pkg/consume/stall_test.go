package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
)

// partitionOf is the test stream's partition of key (see subject).
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
