package consume_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
)

// Members that start together, or a moment apart, while messages keep
// coming: the partitions move while they are handled, yet no key is ever
// in two handlers at once, and each key is handled in order.
func TestMembersStartingTogetherNeverOverlap(t *testing.T) {
	for _, apart := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(apart.String(), func(t *testing.T) { startTogether(t, apart) })
	}
}

func startTogether(t *testing.T, apart time.Duration) {
	n := startParts(t)
	var (
		mu       sync.Mutex
		active   = map[string]string{} // key -> member handling it
		overlaps []string
		j        journal
	)
	handler := func(member string) consume.Handler {
		return func(_ context.Context, m consume.Msg) error {
			mu.Lock()
			if other, ok := active[m.Key]; ok {
				overlaps = append(overlaps, fmt.Sprintf("%s seq %d in %s while in %s", m.Key, m.Seq, member, other))
			}
			active[m.Key] = member
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			mu.Lock()
			delete(active, m.Key)
			mu.Unlock()
			j.add(member, m)
			return nil
		}
	}
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		for i := range 2 {
			time.Sleep(apart)
			_, js := n.Connect(t)
			start(t, js, config("together"), handler(fmt.Sprintf("m%d", i)))
		}
	}()
	// 2.5 s of messages, across the start-up and the hand-over after it.
	want := map[string][]uint64{}
	for r := range 25 {
		// Three a round, so that a key is busy with more behind it
		// whenever its partition moves.
		for k := range 3 * 20 {
			key := fmt.Sprintf("K%03d", k%20)
			want[key] = append(want[key], publish(t, n.JS, key, fmt.Sprint(r)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-joined
	eventually(t, 30*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of %d", j.len(), 25*3*20)
	if r := checkOrder(t, j.all(), want); r > 0 {
		t.Logf("%d repeats", r)
	}
	// Both members must have handled some, or no key could be in two.
	by := map[string]int{}
	for _, h := range j.all() {
		by[h.member]++
	}
	if len(by) < 2 {
		t.Fatalf("one member did everything: %v", by)
	}
	t.Logf("handled per member: %v", by)
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Fatalf("a key in two handlers at once: %v", overlaps)
	}
}
