package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// The gateway sends a client-streaming body (ImportLeads' rows) from a
// goroutine that stops at the first value that does not decode and
// half-closes the stream, so the call would end as a success with the bad
// value and everything after it silently dropped. These pieces carry that
// decode error from the body to the stream's end, where it becomes the
// call's INVALID_ARGUMENT, written after the results of the values before
// it.

// requestBody is a request body that remembers the first value of it that
// did not decode.
type requestBody struct {
	io.ReadCloser
	mu      sync.Mutex
	decoded int // values decoded so far
	err     error
}

func (b *requestBody) record(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.decoded++
	case b.err == nil && !errors.Is(err, io.EOF):
		b.err = fmt.Errorf("request body: value %d does not decode: %w", b.decoded+1, err)
	}
}

func (b *requestBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

type bodyKey struct{}

// withBody wraps each request's body in a requestBody that the call's
// context can find.
func withBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := &requestBody{ReadCloser: r.Body}
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		r.Body = b
		h.ServeHTTP(w, r)
	})
}

// decodeRecorder is the gateway's marshaler, with decoders that report
// their errors to the requestBody they read.
type decodeRecorder struct{ runtime.Marshaler }

func (m decodeRecorder) NewDecoder(r io.Reader) runtime.Decoder {
	dec := m.Marshaler.NewDecoder(r)
	b, ok := r.(*requestBody)
	if !ok {
		return dec
	}
	return runtime.DecoderFunc(func(v any) error {
		err := dec.Decode(v)
		b.record(err)
		return err
	})
}

// streamBodyErrors turns the clean end of a client stream whose HTTP body
// stopped decoding into that error.
func streamBodyErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	b, ok := ctx.Value(bodyKey{}).(*requestBody)
	if err != nil || !ok || !desc.ClientStreams {
		return cs, err
	}
	return bodyCheckedStream{ClientStream: cs, body: b}, nil
}

type bodyCheckedStream struct {
	grpc.ClientStream
	body *requestBody
}

func (s bodyCheckedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		if bad := s.body.failed(); bad != nil {
			return InvalidArgument(bad.Error(), FieldViolation{Field: "body", Description: bad.Error()})
		}
	}
	return err
}
