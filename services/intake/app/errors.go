package app

import (
	"errors"
	"strings"

	"github.com/leadflow/leadflow/services/intake/form"
)

// ErrNotFound is returned for an unknown lead or campaign.
var ErrNotFound = errors.New("not found")

// ErrAlreadyExists is returned when registering a campaign id that is
// taken by a different campaign.
var ErrAlreadyExists = errors.New("already exists")

// ValidationError lists the refused fields of a request; nothing was
// written.
type ValidationError struct {
	Violations form.Violations
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + " " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

func invalid(v form.Violations) error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}

// KeyReusedError is an idempotency key (or activity id) that was used
// before for a request with other content: a key names one request, so
// the request is refused and nothing is written.
type KeyReusedError struct {
	// Field names the key in the request, e.g. "idempotency_key".
	Field string
}

func (e *KeyReusedError) Error() string {
	return e.Field + " was used before for a request with other content; use a new one for a new request"
}
