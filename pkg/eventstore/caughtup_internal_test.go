package eventstore

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A read that timed out is caught up only if the server has nothing left
// and sent nothing the reader has not had.
func TestCaughtUp(t *testing.T) {
	info := func(pending, consumer, stream uint64) *jetstream.ConsumerInfo {
		return &jetstream.ConsumerInfo{NumPending: pending, Delivered: jetstream.SequenceInfo{Consumer: consumer, Stream: stream}}
	}
	for _, c := range []struct {
		name string
		info *jetstream.ConsumerInfo
		read uint64
		want bool
	}{
		{"all read", info(0, 10, 40), 40, true},
		{"sent, not read yet", info(0, 10, 40), 38, false},
		{"more on the server", info(3, 10, 40), 40, false},
		{"nothing delivered, nothing pending (past the end, or reset)", info(0, 0, 40), 0, true},
		{"nothing delivered, some pending", info(2, 0, 40), 0, false},
	} {
		if got := CaughtUp(c.info, c.read); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
