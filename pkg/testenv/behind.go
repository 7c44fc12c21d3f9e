package testenv

import (
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// ShortRead plays a replica behind the one whose consumer delivered an
// event: Trim passes reads through, except that the first one with
// records loses its last record, or all of them with Empty.
type ShortRead struct {
	Empty  bool
	served atomic.Bool
}

// Trim is the read recs, err as the lagging replica answers it.
func (s *ShortRead) Trim(recs []eventstore.Record, err error) ([]eventstore.Record, error) {
	if err != nil || len(recs) == 0 || !s.served.CompareAndSwap(false, true) {
		return recs, err
	}
	if s.Empty {
		return nil, nil
	}
	return recs[:len(recs)-1], nil
}

// Retried calls attempt up to n times until it returns nil, as a consumer
// retries a failed handler, and returns the failed attempts' errors.
func Retried(n int, attempt func() error) []error {
	var errs []error
	for range n {
		err := attempt()
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	return errs
}

// Delivered is the lead event rec of stream as pkg/consume first hands it
// to a handler.
func Delivered(t testing.TB, stream string, rec eventstore.Record) consume.Msg {
	t.Helper()
	data, err := proto.Marshal(rec.Event)
	if err != nil {
		t.Fatal(err)
	}
	return consume.Msg{Stream: stream, Subject: rec.Subject, Key: eventstore.LeadID(rec.Subject), Seq: rec.Seq, Time: rec.Time,
		Header: nats.Header{eventstore.HeaderType: []string{rec.Event.GetEventType()}}, Data: data, Delivered: 1}
}
