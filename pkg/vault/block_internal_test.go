package vault

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A background save of the next block that failed (the server away for a
// moment) is tried again by a later take: once the block runs out, the
// take after the outage gets a key, not the old save's error.
func TestAFailedBackgroundSaveIsTriedAgain(t *testing.T) {
	var calls atomic.Int32
	save := func(context.Context) (*block, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("no responders")
		}
		return &block{deks: make([][keySize]byte, blockSize)}, nil
	}
	b := &blocks{cur: &block{deks: make([][keySize]byte, blockSize)}}
	ctx := context.Background()
	for range blockSize - refillAt { // the first background save starts at the last of these
		if _, _, err := b.take(ctx, save); err != nil {
			t.Fatal(err)
		}
	}
	first := b.next
	if first == nil {
		t.Fatal("no background save started with a quarter of the block left")
	}
	select {
	case <-first.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the background save did not end")
	}
	for i := range refillAt + 1 { // the rest of the block, and one more
		if _, _, err := b.take(ctx, save); err != nil {
			t.Fatalf("take %d after the failed save: %v", i, err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d saves, want the failed one and one more", n)
	}
}
