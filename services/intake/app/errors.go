package app

import (
	"errors"
	"fmt"
	"strings"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
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

// ClaimedError is a claim that is already held, pointing at its lead.
type ClaimedError struct {
	Key  ClaimKey
	Held *eventv1.Claim
}

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("claim %s/%s is held by lead %s", e.Key.Kind, e.Key.Hash, e.Held.GetLeadId())
}
