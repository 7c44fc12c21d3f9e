package consume

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SetParkedListed runs f in every reload of the parked keys, between listing
// them and installing the list, until the returned func is called.
func SetParkedListed(f func()) (restore func()) {
	parkedListed.Store(&f)
	return func() { parkedListed.Store(nil) }
}

// SetUnansweredFor changes how long unanswered attempts are waited out,
// until the returned func is called.
func SetUnansweredFor(d time.Duration) (restore func()) {
	old := unansweredFor.Swap(int64(d))
	return func() { unansweredFor.Store(old) }
}

// RecordStarts stores n unfinished handlings of the message at seq of key
// in group, as members do before they handle a redelivery.
func RecordStarts(ctx context.Context, js jetstream.JetStream, stream, group, key string, seq uint64, n int) error {
	m := nats.NewMsg(startedSubject(group, key))
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrStarts, strconv.Itoa(n))
	_, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream))
	return err
}
