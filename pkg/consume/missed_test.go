package consume_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// A delivery the member never got (lost with a dropped connection) is
// the server's to give back only after its AckWait: the member must not
// handle the key's next message first. The step in the durable's
// delivery sequence gives the partition back until the missed message
// has expired, and the key's messages are handled in order.
func TestAMissedDeliveryIsHandledBeforeTheNextOfItsKey(t *testing.T) {
	n := startParts(t)
	const key = "missed"
	var j journal
	start(t, n.JS, config("missed"), func(ctx context.Context, m consume.Msg) error {
		j.add("m", m)
		return nil
	})
	first := publish(t, n.JS, key, "0")
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "the first message was not handled")

	var lost atomic.Uint64
	var dropped atomic.Bool
	restore := consume.DropDeliveries(func(m consume.Msg) bool {
		if m.Seq == lost.Load() && m.Delivered == 1 {
			dropped.Store(true)
			return true
		}
		return false
	})
	defer restore()
	lost.Store(first + 1)
	missed := publish(t, n.JS, key, "1")
	if missed != first+1 {
		t.Fatalf("published at %d, want %d", missed, first+1)
	}
	eventually(t, 10*time.Second, dropped.Load, "the delivery was not dropped")
	next := publish(t, n.JS, key, "2")
	want := map[string][]uint64{key: {first, missed, next}}
	eventually(t, 20*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of 3", j.len())
	checkOrder(t, j.all(), want)
}

// A delivery lost with a dropped connection while the member holds
// another message of the partition: the reconnect hands the partition
// back, and its naks reach the server over the new connection. The lost
// one is still the member's on the server until its AckWait, so the
// member must neither unpin nor take the partition again before then: the
// key's next message, published meanwhile, is handled after it.
func TestADeliveryLostWithAReconnectIsHandledBeforeTheNextOfItsKey(t *testing.T) {
	n := startParts(t)
	nc, js, err := eventstore.Dial(n.Server.URL(), "reconnecting")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const key = "K"
	slow := keyIn("slow", partitionOf(key))
	cfg := config("reconnect")
	cfg.AckWait, cfg.PinnedTTL = 2*time.Second, 6*time.Second
	var j journal
	start(t, js, cfg, func(ctx context.Context, m consume.Msg) error {
		j.add("m", m)
		if m.Key == slow && m.Delivered == 1 {
			time.Sleep(700 * time.Millisecond) // held when the connection drops
		}
		return nil
	})
	first := publish(t, n.JS, key, "0")
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "the first message was not handled")
	held := publish(t, n.JS, slow, "slow")
	eventually(t, 5*time.Second, func() bool { return j.len() == 2 }, "the slow message was not started")

	var dropped atomic.Bool
	restore := consume.DropDeliveries(func(m consume.Msg) bool {
		if m.Seq == held+1 && m.Delivered == 1 {
			dropped.Store(true)
			return true
		}
		return false
	})
	defer restore()
	missed := publish(t, n.JS, key, "1")
	if missed != held+1 {
		t.Fatalf("published at %d, want %d", missed, held+1)
	}
	eventually(t, 5*time.Second, dropped.Load, "the delivery was not dropped")
	droppedAt := time.Now()
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return nc.IsConnected() && nc.Stats().Reconnects > 0 }, "no reconnect")
	// Past the hand-back and the next heartbeat's take, well inside the
	// lost delivery's AckWait.
	time.Sleep(1600*time.Millisecond - time.Since(droppedAt))
	next := publish(t, n.JS, key, "2")
	want := map[string][]uint64{key: {first, missed, next}, slow: {held}}
	eventually(t, 20*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d", j.len())
	checkOrder(t, j.all(), want)
}
