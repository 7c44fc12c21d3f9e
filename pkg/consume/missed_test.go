package consume_test

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// cutter is a TCP proxy between a member and the server whose
// connections can be cut, and new ones refused, as a network does.
type cutter struct {
	ln     net.Listener
	mu     sync.Mutex
	refuse bool
	conns  []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			out, err := net.Dial("tcp", target)
			if c.refuse || err != nil {
				c.mu.Unlock()
				in.Close()
				continue
			}
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func (c *cutter) mend() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = false
}

// A member hands an idle partition to a member that joins, and its
// connection drops as the release begins, with the key's next delivery in
// flight: the release runs before the reconnect, so no count has moved.
// It must not unpin (the unpin would go out once reconnected, while the
// lost delivery is still the member's on the server): the new owner gets
// the lost one before the key's next.
func TestAHandBackWhileDisconnectedKeepsOrder(t *testing.T) {
	n := startParts(t)
	px := newCutter(t, strings.TrimPrefix(n.Server.URL(), "nats://"))
	nc, js, err := eventstore.Dial("nats://"+px.ln.Addr().String(), "cut")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := config("cut")
	cfg.AckWait, cfg.PinnedTTL = 5*time.Second, 6*time.Second
	var j journal
	start(t, js, cfg, func(ctx context.Context, m consume.Msg) error { j.add("m", m); return nil })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var kv jetstream.KeyValue
	eventually(t, 5*time.Second, func() bool { kv, err = n.JS.KeyValue(ctx, consume.DefaultMembersBucket); return err == nil }, "no members bucket")
	var member string
	eventually(t, 5*time.Second, func() bool {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			if id, ok := strings.CutPrefix(k, "cut."); ok {
				member = id
			}
		}
		return member != ""
	}, "the member is not listed")
	// A member that joins takes part: its owner under both.
	const joiner = "joiner"
	members := []string{member, joiner}
	slices.Sort(members)
	part := -1
	for p := range partitions {
		if consume.Owner(members, p) == joiner {
			part = p
			break
		}
	}
	key := keyIn("cut", part)
	first := publish(t, n.JS, key, "0")
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "the first message was not handled")

	var dropped, released atomic.Bool
	defer consume.DropDeliveries(func(m consume.Msg) bool {
		if m.Seq == first+1 && m.Delivered == 1 {
			dropped.Store(true)
			return true
		}
		return false
	})()
	defer consume.SetBeforeRelease(func(p int) {
		if p != part || released.Load() {
			return
		}
		px.cut()
		for nc.IsConnected() {
			time.Sleep(time.Millisecond)
		}
		released.Store(true)
		time.AfterFunc(300*time.Millisecond, px.mend)
	})()
	missed := publish(t, n.JS, key, "1")
	eventually(t, 5*time.Second, dropped.Load, "the delivery was not dropped")
	if _, err := kv.Put(ctx, "cut."+joiner, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, released.Load, "the partition was not released")
	eventually(t, 5*time.Second, func() bool { return nc.IsConnected() && nc.Stats().Reconnects > 0 }, "no reconnect")
	// The joiner never pulls: it leaves, and the member takes part back.
	if err := kv.Purge(ctx, "cut."+joiner); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	next := publish(t, n.JS, key, "2")
	want := map[string][]uint64{key: {first, missed, next}}
	eventually(t, 20*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d", j.len())
	checkOrder(t, j.all(), want)
}

// A reconnect long past, whose pulls have come back empty for 1.5
// AckWait since, can have taken nothing in flight: a clean stop still
// unpins every partition, rather than leaving the next owner to wait the
// pins out.
func TestAnOldReconnectDoesNotHoldPinsAtAStop(t *testing.T) {
	n := startParts(t)
	nc, js, err := eventstore.Dial(n.Server.URL(), "old-reconnect")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := config("oldreconnect")
	cfg.PinnedTTL = 6 * time.Second // as in TestCleanStopUnpinsIdlePartitions
	var j journal
	run := start(t, js, cfg, func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		return nil
	})
	for p := range partitions {
		publish(t, n.JS, keyIn("old", p), "x")
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == partitions }, "handled %d of %d", j.len(), partitions)
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return nc.IsConnected() && nc.Stats().Reconnects > 0 }, "no reconnect")
	time.Sleep(3 * cfg.AckWait) // empty pulls, well past 1.5 AckWait
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if p := pinnedParts(t, n.JS, "oldreconnect"); len(p) != 0 {
		t.Fatalf("still pinned after a clean stop: %v", p)
	}
}
