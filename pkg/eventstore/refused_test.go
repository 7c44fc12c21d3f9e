package eventstore_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// A setup that cannot pass is not retried for a minute: a 4xx refusal,
// and a single server asked for replicas (a 500 no retry mends); a 5xx,
// or no suitable peers while a node is down, is.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  *jetstream.APIError
		want bool
	}{
		{&jetstream.APIError{Code: 400, ErrorCode: 10058}, true},
		{&jetstream.APIError{Code: 500, ErrorCode: 10074, Description: "replicas > 1 not supported in non-clustered mode"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005}, false},
	} {
		if got := eventstore.Refused(c.err); got != c.want {
			t.Errorf("%d/%d: refused %v, want %v", c.err.Code, c.err.ErrorCode, got, c.want)
		}
	}
}
