package grpcserver

import (
	"errors"
	"net/url"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
)

// A query parameter is read as the gateway reads it, by its proto or JSON
// name, unless the request has no such field: then it is refused by its
// path, not dropped.
func TestStrictQueryRefusesUnknownParameters(t *testing.T) {
	q := &strictQuery{}
	noFilter := utilities.NewDoubleArray(nil)
	req := &intakev1.CaptureLeadRequest{}
	ok := url.Values{"contact.email": {"a@example.com"}, "idempotencyKey": {"k"}, "occurred_at": {"2026-01-02T03:04:05Z"}}
	if err := q.Parse(req, ok, noFilter); err != nil {
		t.Fatal(err)
	}
	if req.GetContact().GetEmail() != "a@example.com" || req.GetIdempotencyKey() != "k" || req.GetOccurredAt().GetSeconds() == 0 {
		t.Fatalf("parsed %v", req)
	}
	for key, path := range map[string]string{
		"contact.emial":           "contact.emial",
		"idempotency":             "idempotency",
		"attribution.source.more": "attribution.source.more",
	} {
		err := q.Parse(&intakev1.CaptureLeadRequest{}, url.Values{key: {"x"}}, noFilter)
		var uf *UnknownFieldError
		if !errors.As(err, &uf) || uf.Path != path {
			t.Errorf("?%s=x: %v, want an unknown field at %s", key, err, path)
		}
	}
	var uf *UnknownFieldError
	if err := q.Parse(&eventv1.Contact{}, url.Values{"emial": {"x"}}, noFilter); !errors.As(err, &uf) || uf.Message != "Contact" {
		t.Errorf("the message is named: %v", err)
	}
}
