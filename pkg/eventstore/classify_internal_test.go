package eventstore

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What a failed attempt tells decides between sending it again, giving up
// and looking for it: a write the server may have stored must never be
// reported as refused, and one it refused must not be sent forever.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name            string
		err             error
		answered, retry bool
	}{
		{"no responders: nobody stored it", nats.ErrNoResponders, true, true},
		{"no stream response", jetstream.ErrNoStreamResponse, true, true},
		{"503 during an election", &jetstream.APIError{Code: 503, ErrorCode: 10008}, true, true},
		{"429 too many batches", &jetstream.APIError{Code: 429, ErrorCode: 10205}, true, true},
		{"refused for good", &jetstream.APIError{Code: 400, ErrorCode: 10054}, true, false},
		// A batch the server never got whole: nothing stored, sent again.
		{"batch incomplete", &jetstream.APIError{Code: 400, ErrorCode: 10176}, true, true},
		// The leader holds the first copy, not yet applied: it may be
		// stored in a moment, and the next attempt answers its sequence.
		{"duplicate in process", &jetstream.APIError{Code: 409, ErrorCode: 10158}, false, true},
		{"timeout", context.DeadlineExceeded, false, true},
		{"connection closed", nats.ErrConnectionClosed, false, false},
		{"wrapped", errors.Join(errors.New("commit"), &jetstream.APIError{Code: 409, ErrorCode: 10158}), false, true},
	} {
		answered, retry := classify(c.err)
		if answered != c.answered || retry != c.retry {
			t.Errorf("%s: answered %v, retry %v; want %v, %v", c.name, answered, retry, c.answered, c.retry)
		}
	}
}
