package consume_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
)

// Two replicas run the same pinned durable: only one receives messages;
// when it stops, the standby takes over, and every subject is still
// handled once and in order across the handover.
func TestPinnedStandbyTakesOver(t *testing.T) {
	t.Parallel()
	n := startLeads(t)
	_, js2 := n.Connect(t) // the second replica's own connection
	var j journal
	var byA, byB atomic.Int64
	handler := func(counter *atomic.Int64) consume.Handler {
		return func(ctx context.Context, m consume.Msg) error {
			counter.Add(1)
			j.add(m)
			return nil
		}
	}
	// A long pin TTL: a clean stop must hand over at once, not after it.
	cfg := consume.Config{Stream: leads, Durable: "pinned", Workers: 4, Pinned: true, PinnedTTL: time.Minute}
	a := start(t, n.JS, cfg, handler(&byA))
	b := start(t, js2, cfg, handler(&byB))

	const subjects, perSubject = 10, 20
	want := map[string][]uint64{}
	send := func(round int) {
		for i := range perSubject / 2 {
			for s := range subjects {
				subj := lead(s)
				want[subj] = append(want[subj], publish(t, n.JS, subj, fmt.Sprint(round, i)))
			}
		}
	}
	send(1)
	eventually(t, 10*time.Second, func() bool { return j.len() >= subjects*perSubject/2 }, "first half: handled %d", j.len())
	// Whichever replica got the pin got every message.
	active, standby, standbyCount := a, b, &byB
	if byA.Load() == 0 {
		active, standby, standbyCount = b, a, &byA
	}
	if standbyCount.Load() != 0 {
		t.Fatalf("both replicas handled messages: %d and %d", byA.Load(), byB.Load())
	}
	if err := active.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	send(2)
	eventually(t, 10*time.Second, func() bool { return j.len() >= subjects*perSubject }, "after failover: handled %d of %d", j.len(), subjects*perSubject)
	eventually(t, 5*time.Second, settled(t, n.JS, "pinned"), "not settled")
	if err := standby.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if standbyCount.Load() == 0 {
		t.Fatal("the standby never took over")
	}
	if j.len() != subjects*perSubject {
		t.Fatalf("handled %d, want %d (none twice)", j.len(), subjects*perSubject)
	}
	for subj, seqs := range want {
		if got := j.seqs(subj); !slices.Equal(got, seqs) {
			t.Errorf("%s handled in order %v, want %v", subj, got, seqs)
		}
	}
}
