package consume_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
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
