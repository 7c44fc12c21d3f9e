package eventstore

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict is matched (errors.Is) by every *ConflictError.
var ErrConflict = errors.New("eventstore: concurrent write")

// ErrNotFound is returned by Load when a subject has no events.
var ErrNotFound = errors.New("eventstore: not found")

// ErrBehind is a read of a subject that does not show the event being
// handled: on a replicated stream a consumer on one replica can deliver an
// event before the replica that answers the read has applied it. A handler
// that decides from the read returns it rather than acknowledge an event it
// did not see; the consumer's retry reads again.
var ErrBehind = errors.New("eventstore: read is behind the event being handled")

// Behind is ErrBehind for a read of subject at version when the event
// being handled was stored at seen, nil when the read shows it.
func Behind(subject string, version, seen uint64) error {
	if version >= seen {
		return nil
	}
	return fmt.Errorf("%s read at version %d, before its event at %d: %w", subject, version, seen, ErrBehind)
}

// ConflictError is a lost optimistic-concurrency race: the subject's last
// sequence was not the one the writer expected. Nothing of the commit was
// stored. Actual is the subject's version as the answering replica read
// it (in a cluster it may trail the newest by a moment); reload and decide
// again.
type ConflictError struct {
	Subject  string
	Expected uint64
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: %s is at version %d, expected %d", e.Subject, e.Actual, e.Expected)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// IsWrongLastSequence reports whether err is the server refusing a publish
// whose expected last sequence did not match: the optimistic-concurrency
// refusal. It is recognised by server error code, 10071 on a single
// replica and 10164 on replicated streams, never by text ("wrong last
// sequence: n" is not a contract).
func IsWrongLastSequence(err error) bool {
	return HasErrorCode(err, jetstream.JSErrCodeStreamWrongLastSequence,
		jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// errCodeDuplicateInProcess (10158, "duplicate message id is in process")
// is a replicated stream's leader seeing a publish again whose first
// copy it has proposed but not yet applied: the write may well be stored
// in a moment, and sending it again then answers its sequence. nats.go
// has no name for it.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// errCodeBatchIncomplete (10176, "atomic publish batch is incomplete") is
// a batch whose first messages the server never got whole (they went to
// a leader that lost its place, or were lost in a reconnect): nothing of
// it is stored, and a new attempt may be.
const errCodeBatchIncomplete jetstream.ErrorCode = 10176

// HasErrorCode reports whether err is, or wraps, a JetStream API error
// (*jetstream.APIError) carrying one of the server error codes.
func HasErrorCode(err error, codes ...jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return slices.Contains(codes, apiErr.ErrorCode)
}
