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

// StoreDead stores, by hand, the message at seq of subject (in stream) as
// key's dead letter in group, as a member does before it settles it.
func StoreDead(ctx context.Context, js jetstream.JetStream, deadLetter, stream, group, key, subject string, seq uint64, partition int) error {
	m := nats.NewMsg(entrySubject(group, key))
	m.Header.Set(hdrStream, stream)
	m.Header.Set(hdrSubject, subject)
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrPartition, strconv.Itoa(partition))
	m.Header.Set(hdrError, "stored by hand")
	m.Header.Set(hdrAttempts, "1")
	m.Header.Set(hdrTime, time.Now().UTC().Format(time.RFC3339Nano))
	_, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(deadLetter))
	return err
}

// StoreParked parks, by hand, the message at seq of subject behind key's
// dead letter in group.
func StoreParked(ctx context.Context, js jetstream.JetStream, deadLetter, stream, group, key, subject string, seq uint64, partition int) error {
	m := nats.NewMsg(parkedSubject(group, key, seq))
	m.Header.Set(hdrStream, stream)
	m.Header.Set(hdrSubject, subject)
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrPartition, strconv.Itoa(partition))
	_, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(deadLetter))
	return err
}

// LoseHandBacks drops the naks of every hand-back, as a connection that
// drops with them unsent does, until the returned func is called.
func LoseHandBacks() (restore func()) {
	lostHandBack.Store(true)
	return func() { lostHandBack.Store(false) }
}

// DropDeliveries drops the deliveries drop is true of before the member
// sees them, as a connection that drops with them in flight does, until
// the returned func is called.
func DropDeliveries(drop func(Msg) bool) (restore func()) {
	dropDelivery.Store(&drop)
	return func() { dropDelivery.Store(nil) }
}

// SetBeforeRelease runs f(partition) as each release begins, until the
// returned func is called.
func SetBeforeRelease(f func(int)) (restore func()) {
	beforeRelease.Store(&f)
	return func() { beforeRelease.Store(nil) }
}

// Owner is the member of members that owns partition p.
func Owner(members []string, p int) string { return owner(members, p) }
