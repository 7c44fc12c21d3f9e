package eventstore

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict is matched (errors.Is) by every *ConflictError.
var ErrConflict = errors.New("eventstore: concurrent write")

// ErrNotFound is returned by Load when a subject has no events.
var ErrNotFound = errors.New("eventstore: not found")

// ConflictError is a lost optimistic-concurrency race: the subject's last
// sequence was not the one the writer expected. Nothing of the commit was
// stored. Actual is the subject's version now; reload and decide again.
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

// isWrongLastSequence recognises the server's optimistic-concurrency
// refusal by code: 10071 on a single replica, 10164 on replicated streams.
// The text ("wrong last sequence: n") is not a contract.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
